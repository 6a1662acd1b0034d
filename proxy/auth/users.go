// Package auth holds qgate's users, their rights, and the verification of their passwords: bcrypt
// behind a bounded cache of verified credentials, a singleflight so that a reconnect storm costs one
// bcrypt, bounds on the bcrypt comparisons running at once (per client address and overall), and a
// per-address delay of failed logins' replies.
package auth

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/qgate/qgate/proxy/glob"
)

// Right is what a user may do with a queue or channel.
type Right uint8

// The rights of the README's "Authentication and TLS".
const (
	RightPush Right = iota + 1
	RightPop        // LPOP, RPOP, BLPOP, BRPOP, LLEN, LRANGE (and acks, nacks and lease extensions)
	RightPublish
	RightSubscribe // channels and patterns
	RightAdmin
)

// String is the right's name as in the config file and in NOPERM errors.
func (r Right) String() string {
	switch r {
	case RightPush:
		return "push"
	case RightPop:
		return "pop"
	case RightPublish:
		return "publish"
	case RightSubscribe:
		return "subscribe"
	case RightAdmin:
		return "admin"
	}
	return "none"
}

// UserConfig is one entry of the `users:` list of the config file.
type UserConfig struct {
	Name         string   `yaml:"name"`
	PasswordHash string   `yaml:"password_hash"` // bcrypt ($2a$, $2b$ or $2y$)
	Enabled      *bool    `yaml:"enabled"`       // default true
	Push         []string `yaml:"push"`          // queue globs
	Pop          []string `yaml:"pop"`           // queue globs (peek, ack, nack and extend included)
	Publish      []string `yaml:"publish"`       // channel globs
	Subscribe    []string `yaml:"subscribe"`     // channel globs (see User.MaySubscribePattern)
	Admin        []string `yaml:"admin"`         // queue globs for admin commands; any entry unlocks full INFO
}

// User is a configured user; immutable once built.
type User struct {
	Name    string
	Enabled bool
	hash    []byte
	rights  [RightAdmin + 1][]string
}

// Hash returns the user's bcrypt hash.
func (u *User) Hash() []byte { return u.hash }

// Globs returns the user's globs for a right.
func (u *User) Globs(r Right) []string {
	if r == 0 || r > RightAdmin {
		return nil
	}
	return u.rights[r]
}

// Allowed reports whether the user has right r on the queue or channel name.
func (u *User) Allowed(r Right, name string) bool {
	for _, g := range u.Globs(r) {
		// "*" covers every name, the empty one too, which Redis's matcher does not give it (Redis's
		// ACL also takes its own * as "all keys" or "all channels" rather than matching it).
		if g == "*" || glob.Match(g, name) {
			return true
		}
	}
	return false
}

// IsAdmin reports whether the user has any admin right (full INFO).
func (u *User) IsAdmin() bool { return len(u.rights[RightAdmin]) > 0 }

// MaySubscribePattern reports whether the user may PSUBSCRIBE to pattern: whether every channel the
// pattern can match is inside one of the user's subscribe globs. Deciding whether one glob's language
// is contained in another's is not worth the risk in general (and matching the pattern as if it were
// a channel name is unsound: "e*" matches "events.*" as a string but also matches "email"), so qgate
// accepts only what it can prove:
//
//   - a glob "*" covers every pattern, as Redis ACL's &* does;
//   - a glob "prefix*" (a literal prefix, then only *) covers a pattern whose literal prefix (see
//     glob.LiteralPrefix: the part before its first unescaped *, ? or [) starts with prefix, since
//     every channel the pattern matches starts with that;
//   - a glob covers the identical pattern (so a glob without glob characters covers only itself, as
//     Redis ACL compares patterns);
//   - a pattern without glob characters matches one channel, which any glob matching it covers.
//
// Anything else is refused.
func (u *User) MaySubscribePattern(pattern string) bool {
	lit, rest := glob.LiteralPrefix(pattern)
	if rest == "" {
		return u.Allowed(RightSubscribe, lit)
	}
	for _, g := range u.rights[RightSubscribe] {
		if g == pattern {
			return true
		}
		if prefix, grest := glob.LiteralPrefix(g); grest != "" && strings.Trim(grest, "*") == "" && strings.HasPrefix(lit, prefix) {
			return true
		}
	}
	return false
}

// Store is an immutable set of users. A nil or empty store means no users are configured: qgate is
// open and needs no authentication.
type Store struct {
	users map[string]*User
	dummy []byte // compared against for unknown and disabled users (see Authenticator.Login)
}

// NewStore builds a store, reporting every problem with its path (users[1].password_hash: …).
func NewStore(cfg []UserConfig) (*Store, error) {
	var errs []error
	bad := func(i int, field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("users[%d].%s: "+format, append([]any{i, field}, args...)...))
	}
	st := &Store{users: make(map[string]*User, len(cfg))}
	for i, uc := range cfg {
		switch {
		case uc.Name == "":
			bad(i, "name", "must not be empty")
		case !validUserName(uc.Name):
			bad(i, "name", "must be printable ASCII without spaces, got %q", uc.Name)
		case st.users[uc.Name] != nil:
			bad(i, "name", "duplicate user %q", uc.Name)
		}
		if _, err := bcrypt.Cost([]byte(uc.PasswordHash)); err != nil {
			if uc.PasswordHash == "" {
				bad(i, "password_hash", "missing (create one with: qgate hash-password)")
			} else {
				// Never echo the value: it could be a plain password pasted by mistake.
				bad(i, "password_hash", "not a bcrypt hash (create one with: qgate hash-password)")
			}
		}
		u := &User{Name: uc.Name, Enabled: uc.Enabled == nil || *uc.Enabled, hash: []byte(uc.PasswordHash)}
		for r, globs := range [...][]string{RightPush: uc.Push, RightPop: uc.Pop, RightPublish: uc.Publish,
			RightSubscribe: uc.Subscribe, RightAdmin: uc.Admin} {
			if r == 0 {
				continue
			}
			for j, g := range globs {
				if g == "" {
					bad(i, fmt.Sprintf("%s[%d]", Right(r), j), "empty glob")
				}
			}
			u.rights[r] = append([]string(nil), globs...)
		}
		if st.users[uc.Name] == nil {
			st.users[uc.Name] = u
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// The dummy hash has the highest cost among the users, so that a login as an unknown or disabled
	// user takes as long as a wrong password for a real one (no user enumeration by timing).
	maxCost := 0
	for _, u := range st.users {
		if c, _ := bcrypt.Cost(u.hash); c > maxCost {
			maxCost = c
		}
	}
	if maxCost > 0 {
		var random [16]byte
		_, _ = rand.Read(random[:])
		h, err := bcrypt.GenerateFromPassword(random[:], maxCost)
		if err != nil {
			return nil, fmt.Errorf("users: %w", err)
		}
		st.dummy = h
	}
	return st, nil
}

func validUserName(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return len(s) <= 256
}

// Required reports whether users are configured, so connections must authenticate.
func (s *Store) Required() bool { return s != nil && len(s.users) > 0 }

// Lookup returns the user called name, or nil.
func (s *Store) Lookup(name string) *User {
	if s == nil {
		return nil
	}
	return s.users[name]
}

// Len is the number of users.
func (s *Store) Len() int {
	if s == nil {
		return 0
	}
	return len(s.users)
}
