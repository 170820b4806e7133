// entry.go writes a boot entry into the firmware's variables: a new or reused Boot####, first in BootOrder.
package efiboot

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
)

// Action is what Ensure did.
type Action string

// The actions.
const (
	ActionNotUEFI   Action = "not-uefi"  // the machine did not boot by UEFI: nothing to do
	ActionCreated   Action = "created"   // a new Boot#### was written
	ActionUpdated   Action = "updated"   // an entry for the same partition and file was rewritten
	ActionUnchanged Action = "unchanged" // an identical entry was there already
)

// Installed is the entry Install left in the variables.
type Installed struct {
	Number    uint16
	Action    Action   // created, updated or unchanged
	BootOrder []uint16 // as written (or found, when it was right)
}

// Install makes opt a boot entry in v and puts it first in BootOrder, or,
// when the firmware booted this time from the network (BootCurrent is an
// entry whose device path has a MAC, IPv4, IPv6 or URI node: the machine
// PXE-booted the appliance), right after that network entry: the server
// keeps deciding what the machine boots, and when it says "local" the
// firmware goes on to the disk, whatever stale entries follow. An
// entry that boots the same file of the same partition (an HD() node with
// the same signature and number, the same File() path) is reused, and
// rewritten only if it differs; otherwise opt goes into the lowest number
// that neither a Boot#### variable nor BootOrder uses. BootOrder keeps
// every other number in its order and loses only the duplicates of the
// entry's. Boot#### is written before BootOrder, so that BootOrder never
// names a missing entry. Variables that cannot be read or written give an
// error wrapping ErrVars.
func Install(v Vars, opt LoadOption, log *slog.Logger) (Installed, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	enc, err := opt.Encode()
	if err != nil {
		return Installed{}, err
	}
	want, ok := targetOf(opt)
	if !ok {
		return Installed{}, fmt.Errorf("%w: the entry's device path has no HD() and File() nodes", ErrMalformed)
	}
	order, err := readBootOrder(v)
	if err != nil {
		return Installed{}, err
	}
	names, err := v.List()
	if err != nil {
		return Installed{}, fmt.Errorf("%w: %w", ErrVars, err)
	}
	used := map[uint16]bool{}
	for _, n := range order {
		used[n] = true
	}
	type entry struct {
		n     uint16
		attrs uint32
		data  []byte
	}
	var matches []entry
	for _, name := range names {
		n, ok := ParseBootVarName(name)
		if !ok {
			continue
		}
		used[n] = true
		attrs, data, err := v.Get(name)
		if err != nil {
			log.Debug("boot entry unreadable: left alone", "var", name, "err", err)
			continue
		}
		o, err := DecodeLoadOption(data)
		if err != nil {
			log.Debug("boot entry undecodable: left alone", "var", name, "err", err)
			continue
		}
		if t, ok := targetOf(o); ok && sameTarget(t, want) {
			matches = append(matches, entry{n, attrs, data})
		}
	}
	in := Installed{Action: ActionCreated}
	if len(matches) > 0 {
		// The match the firmware tries first, else the lowest number.
		pos := func(n uint16) int {
			if i := slices.Index(order, n); i >= 0 {
				return i
			}
			return len(order) + int(n)
		}
		sort.Slice(matches, func(i, j int) bool { return pos(matches[i].n) < pos(matches[j].n) })
		m := matches[0]
		in.Number, in.Action = m.n, ActionUpdated
		if m.attrs == BootVarAttributes && bytes.Equal(m.data, enc) {
			in.Action = ActionUnchanged
		}
	} else {
		free := -1
		for n := 0; n <= 0xffff; n++ {
			if !used[uint16(n)] {
				free = n
				break
			}
		}
		if free < 0 {
			return Installed{}, fmt.Errorf("%w: every Boot#### number is taken", ErrVars)
		}
		in.Number = uint16(free)
	}
	if in.Action != ActionUnchanged {
		if err := v.Set(BootVarName(in.Number), BootVarAttributes, enc); err != nil {
			return Installed{}, fmt.Errorf("%w: %w", ErrVars, err)
		}
	}
	rest := slices.DeleteFunc(slices.Clone(order), func(n uint16) bool { return n == in.Number })
	at := 0
	if cur, ok := networkBootCurrent(v, log); ok {
		if i := slices.Index(rest, cur); i >= 0 {
			at = i + 1
		}
	}
	in.BootOrder = slices.Insert(rest, at, in.Number)
	if !slices.Equal(in.BootOrder, order) {
		if err := v.Set("BootOrder", BootVarAttributes, EncodeBootOrder(in.BootOrder)); err != nil {
			return Installed{}, fmt.Errorf("%w: %w", ErrVars, err)
		}
	}
	return in, nil
}

// networkBootCurrent returns BootCurrent when it names an entry that
// boots from the network.
func networkBootCurrent(v Vars, log *slog.Logger) (uint16, bool) {
	_, data, err := v.Get("BootCurrent")
	if err != nil || len(data) != 2 {
		return 0, false
	}
	cur := uint16(data[0]) | uint16(data[1])<<8
	_, data, err = v.Get(BootVarName(cur))
	if err != nil {
		return 0, false
	}
	o, err := DecodeLoadOption(data)
	if err != nil {
		log.Debug("BootCurrent's entry undecodable: the new entry goes first", "var", BootVarName(cur), "err", err)
		return 0, false
	}
	return cur, IsNetwork(o)
}

// IsNetwork reports whether o boots from the network: its device path
// has a messaging MAC, IPv4, IPv6 or URI node (UEFI 2.10 §10.3.4).
func IsNetwork(o LoadOption) bool {
	for _, n := range o.FilePath {
		if n.Type == TypeMessaging {
			switch n.SubType {
			case SubTypeMAC, SubTypeIPv4, SubTypeIPv6, SubTypeURI:
				return true
			}
		}
	}
	return false
}

// readBootOrder returns BootOrder, nil when it does not exist.
func readBootOrder(v Vars) ([]uint16, error) {
	_, data, err := v.Get("BootOrder")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrVars, err)
	}
	order, err := DecodeBootOrder(data)
	if err != nil {
		return nil, fmt.Errorf("the firmware's BootOrder: %w", err)
	}
	return order, nil
}
