package auth

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// maxCoverSteps bounds the work of one Covered call. The search is bounded by
// the permissions anyway (their lengths and literals, which the operator
// writes), so only a pathological permission set reaches it; the answer is
// then a denial.
const maxCoverSteps = 20000

// Pattern errors.
var (
	errNoSlash       = errors.New("must start with '/'")
	errEmptySeg      = errors.New("has an empty segment")
	errMixedWildcard = errors.New("a wildcard must be a whole segment: '+' or '#'")
	errHashNotLast   = errors.New("'#' must be the last segment")
	errWildcard      = errors.New("wildcards are not allowed here")
	errTooComplex    = errors.New("too complex to check against the permissions")
)

// ValidatePermission checks the syntax of a permission pattern: a subject
// ("/vehicles/1/speed") in which any segment, the topic included, may be '+'
// (exactly one segment) and the last may be '#' (any number of segments,
// including none: "/vehicles/#" grants "/vehicles" itself too).
func ValidatePermission(p string) error {
	if err := checkPattern(p, true); err != nil {
		return fmt.Errorf("invalid permission pattern %s: %w", quote(p), err)
	}
	return nil
}

// ValidatePermissions checks every pattern in ps.
func ValidatePermissions(ps []string) error {
	for _, p := range ps {
		if err := ValidatePermission(p); err != nil {
			return err
		}
	}
	return nil
}

// checkPattern validates p; wildcards says whether '+' and '#' may appear.
// It runs for every publish, so it is one pass over the bytes.
func checkPattern(p string, wildcards bool) error {
	if p == "" || p[0] != '/' {
		return errNoSlash
	}
	segStart, wild := 1, false // wild: the segment holds '+' or '#'
	for i := 1; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			wild = wild || p[i] == '+' || p[i] == '#'
			continue
		}
		seg := p[segStart:i]
		switch {
		case seg == "":
			return errEmptySeg
		case !wild:
		case seg != "+" && seg != "#":
			return errMixedWildcard
		case !wildcards:
			return errWildcard
		case seg == "#" && i < len(p):
			return errHashNotLast
		}
		segStart, wild = i+1, false
	}
	return nil
}

// Match reports whether the permission pattern perm grants the concrete
// subject. A malformed perm grants nothing, and a malformed subject (or one
// with wildcards) is granted by nothing. It does not allocate.
func Match(perm, subject string) bool {
	return checkPattern(subject, false) == nil && matchValid(perm, subject)
}

// matchValid is Match for a subject known to be valid.
func matchValid(perm, subject string) bool {
	if checkPattern(perm, true) != nil {
		return false
	}
	p, s := perm[1:], subject[1:]
	for {
		ps, prest, pmore := strings.Cut(p, "/")
		if ps == "#" {
			return true
		}
		ss, srest, smore := strings.Cut(s, "/")
		if ps != "+" && ps != ss {
			return false
		}
		switch {
		case !smore:
			return !pmore || prest == "#"
		case !pmore:
			return false
		}
		p, s = prest, srest
	}
}

// Covers reports whether the single permission perm grants every subject that
// pattern (a subject or a subscription pattern) can match.
func Covers(perm, pattern string) bool {
	ok, err := Covered([]string{perm}, pattern)
	return ok && err == nil
}

// Covered reports whether the permission patterns perms, together, grant every
// subject that pattern can match: "/vehicles/#" covers "/vehicles/+/speed";
// "/vehicles/+/speed" does not cover "/vehicles/#"; {"/v", "/v/+/#"} together
// cover "/v/#". It is exact, not a heuristic: false means some subject matched
// by pattern is granted by none of perms. Malformed permissions grant nothing;
// a malformed pattern is an error.
func Covered(perms []string, pattern string) (bool, error) {
	if err := checkPattern(pattern, true); err != nil {
		return false, err
	}
	if !strings.ContainsAny(pattern, "+#") {
		for _, p := range perms {
			if matchValid(p, pattern) {
				return true, nil
			}
		}
		return false, nil
	}
	c := coverer{req: strings.Split(pattern[1:], "/"), memo: map[string]bool{}}
	if c.req[0] == "#" {
		// A subject has at least its topic: "/#" matches what "/+/#" does.
		c.req = []string{"+", "#"}
	}
	for _, p := range perms {
		if checkPattern(p, true) == nil {
			c.perms = append(c.perms, strings.Split(p[1:], "/"))
		}
	}
	start := make([]state, len(c.perms))
	for j := range start {
		start[j] = state{j: j}
	}
	ok := c.covered(0, start)
	if c.steps > maxCoverSteps {
		return false, errTooComplex
	}
	return ok, nil
}

// state is permission j, having matched its first k segments.
type state struct{ j, k int }

// coverer decides whether every word (sequence of segments) matched by req
// from position i on is matched by some permission in a live state set. Only
// the literals the live permissions name can tell words apart: any other
// segment value behaves like every other, so one "fresh" value ("", which no
// segment can be) stands for all of them. That makes the search finite.
type coverer struct {
	perms [][]string
	req   []string
	memo  map[string]bool
	steps int
}

func (c *coverer) covered(i int, live []state) bool {
	if c.steps++; c.steps > maxCoverSteps {
		return false
	}
	for _, s := range live {
		if seg := c.perms[s.j]; s.k < len(seg) && seg[s.k] == "#" {
			return true // grants every continuation, the empty one included
		}
	}
	if len(live) == 0 {
		return false // req still matches some word here, and nothing grants it
	}
	if i == len(c.req) {
		return c.complete(live)
	}
	key := c.key(i, live)
	if v, ok := c.memo[key]; ok {
		return v
	}
	var ok bool
	switch seg := c.req[i]; seg {
	case "#":
		// The word may end here, or go on with any segment and stay in '#'.
		ok = c.complete(live) && c.forEach(live, func(next []state) bool { return c.covered(i, next) })
	case "+":
		ok = c.forEach(live, func(next []state) bool { return c.covered(i+1, next) })
	default:
		ok = c.covered(i+1, c.step(live, seg))
	}
	c.memo[key] = ok
	return ok
}

// complete reports whether some live permission matches a word ending here.
func (c *coverer) complete(live []state) bool {
	for _, s := range live {
		if s.k == len(c.perms[s.j]) {
			return true
		}
	}
	return false
}

// forEach calls f with the successor states for every distinguishable next
// segment (each literal the live permissions name, and the fresh value),
// stopping at the first false.
func (c *coverer) forEach(live []state, f func([]state) bool) bool {
	seen := map[string]bool{}
	for _, s := range live {
		if s.k == len(c.perms[s.j]) {
			continue
		}
		if lit := c.perms[s.j][s.k]; lit != "+" && !seen[lit] {
			seen[lit] = true
			if !f(c.step(live, lit)) {
				return false
			}
		}
	}
	return f(c.step(live, ""))
}

// step returns the states after consuming segment seg ("" for a fresh one).
func (c *coverer) step(live []state, seg string) []state {
	var next []state
	for _, s := range live {
		p := c.perms[s.j]
		if s.k < len(p) && (p[s.k] == "+" || (seg != "" && p[s.k] == seg)) {
			next = append(next, state{s.j, s.k + 1})
		}
	}
	return next
}

func (c *coverer) key(i int, live []state) string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(i))
	for _, s := range live { // live is in permission order: a canonical key
		b.WriteByte(' ')
		b.WriteString(strconv.Itoa(s.j))
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(s.k))
	}
	return b.String()
}
