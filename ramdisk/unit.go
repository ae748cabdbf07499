package ramdisk

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// unitNameMax is the longest unit name systemd accepts, in bytes.
const unitNameMax = 255

// MountUnit returns the name and text of a systemd mount unit that mounts a tmpfs at dir
// as Mount would. The name is dir escaped as `systemd-escape --path --suffix=mount`
// does ("/run/ring" gives "run-ring.mount"); systemd requires a mount unit to have that
// name, so install the text under it.
//
// dir must be absolute, may contain repeated slashes (they are collapsed), and must not
// be "/" or contain "." or ".." components, control characters or backslashes; otherwise
// the error wraps [ErrBadPath]. Invalid opts give an error wrapping [ErrBadOptions].
// User and Group names are written as names: mount(8) resolves them when the unit
// starts, and the unit is ordered after systemd-sysusers.service so a group that
// sysusers.d creates exists by then.
func MountUnit(dir string, opts MountOptions) (name, text string, err error) {
	where, err := cleanUnitPath(dir)
	if err != nil {
		return "", "", err
	}
	if err := opts.validate(); err != nil {
		return "", "", err
	}
	name = escapePath(where) + ".mount"
	if len(name) > unitNameMax {
		return "", "", fmt.Errorf("%w: %q: unit name %d bytes long, systemd allows %d",
			ErrBadPath, dir, len(name), unitNameMax)
	}

	// '%' starts a systemd specifier; "%%" is a literal '%'.
	w := strings.ReplaceAll(where, "%", "%%")
	var b strings.Builder
	b.WriteString("[Unit]\n")
	fmt.Fprintf(&b, "Description=filering ring tmpfs at %s\n", w)
	b.WriteString("DefaultDependencies=no\n")
	b.WriteString("Conflicts=umount.target\n")
	b.WriteString("Before=local-fs.target umount.target\n")
	if isName(opts.User) || isName(opts.Group) {
		b.WriteString("After=systemd-sysusers.service\n")
	}
	b.WriteString("\n[Mount]\n")
	b.WriteString("What=tmpfs\n")
	fmt.Fprintf(&b, "Where=%s\n", w)
	b.WriteString("Type=tmpfs\n")
	fmt.Fprintf(&b, "Options=%s,nosuid,nodev,noexec\n", opts.data(opts.User, opts.Group))
	b.WriteString("\n[Install]\n")
	b.WriteString("WantedBy=local-fs.target\n")
	return name, b.String(), nil
}

// isName reports whether a MountOptions user or group is a name rather than a number.
func isName(s string) bool {
	_, rest := leadingDigits(s)
	return rest != ""
}

// cleanUnitPath checks dir for MountUnit and returns it with repeated and trailing
// slashes removed.
func cleanUnitPath(dir string) (string, error) {
	bad := func(why string) error { return fmt.Errorf("%w: %q: %s", ErrBadPath, dir, why) }
	if !strings.HasPrefix(dir, "/") {
		return "", bad("not an absolute path")
	}
	if !utf8.ValidString(dir) {
		return "", bad("not UTF-8")
	}
	if strings.ContainsFunc(dir, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }) {
		return "", bad("holds a control character or backslash")
	}
	var parts []string
	for _, p := range strings.Split(dir, "/") {
		switch p {
		case "":
		case ".", "..":
			return "", bad(`holds a "." or ".." component`)
		default:
			parts = append(parts, p)
		}
	}
	if len(parts) == 0 {
		return "", bad("refusing to mount over /")
	}
	return "/" + strings.Join(parts, "/"), nil
}

// escapePath escapes an absolute path as systemd does for unit names
// (`systemd-escape --path`): leading and trailing slashes are dropped, "/" becomes "-",
// and each byte other than ASCII letters, digits, ':', '_' and '.' becomes `\xNN`, as
// does a leading '.'. The root directory is "-". path must already be clean.
func escapePath(path string) string {
	p := strings.Trim(path, "/")
	if p == "" {
		return "-"
	}
	const hex = "0123456789abcdef"
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '/':
			b.WriteByte('-')
		case c == '.' && i == 0,
			!('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
				c == ':' || c == '_' || c == '.'):
			b.WriteString(`\x`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
