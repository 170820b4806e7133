// Package efiboot makes the UEFI boot entry that a freshly written disk
// needs. Many images hold their boot loader only at \EFI\<vendor>\...
// (\EFI\debian\shimx64.efi, \EFI\Microsoft\Boot\bootmgfw.efi) and rely on a
// firmware boot entry (the Boot#### and BootOrder variables) that the
// machine being reimaged does not have; without it the disk is right but
// the machine does not boot it.
//
// Ensure reads the disk's EFI system partition in userspace (go-diskfs:
// GPT type C12A7328-F81F-11D2-BA4B-00A0C93EC93B, or MBR type 0xEF), takes
// the removable path \EFI\BOOT\BOOTX64.EFI when it is there, else
// chooses the vendor's loader (shimx64.efi, then grubx64.efi, then a
// vendor's only .efi; ambiguity is an error, not a guess), encodes an
// EFI_LOAD_OPTION (UEFI 2.10 §3.1.3) whose device path is
// HD(partition, GPT GUID)/File(path), writes it as a new or reused
// Boot#### through efivarfs and puts it first in BootOrder (after the
// network entry the machine booted from, if it did), keeping every other
// entry. On a machine not booted by UEFI it does nothing.
//
// The variables are reached through the small Vars interface: EFIVarFS
// (u-root's pkg/efivarfs, mounting efivarfs when needed) on a machine, a
// map in tests.
package efiboot
