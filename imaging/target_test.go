package imaging

import "github.com/shoal-project/shoal/partition"

func openTestTarget(img *Image, path string) (*partition.Target, error) {
	return partition.OpenTarget(path, img.Requirements(), partition.TargetOptions{})
}
