package commands

import (
	"github.com/qgate/qgate/proxy/auth"
)

// Authentication and authorisation in one place: Exec calls checkAccess for every command, driven by
// the spec's Verb and the names its Targets picks out of the arguments. Handlers never check rights.

// Texts of authentication errors: Redis's, then qgate's own for a login whose password was not checked.
const (
	ErrNoAuth    = "NOAUTH Authentication required."
	ErrWrongPass = "WRONGPASS invalid username-password pair or user is disabled."
	ErrHelloAuth = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"
	// ErrLoginBusy: the login waited too long for its turn to check the password (bcrypt is bounded
	// per address and overall); the password was not checked, so it is not a WRONGPASS.
	ErrLoginBusy = "ERR too many logins in progress, try again later"
	// ErrLoginInterrupted: qgate began shutting down before the password was checked.
	ErrLoginInterrupted = "ERR login interrupted: qgate is shutting down"
)

// verbRight is the right each verb needs; peeking (LLEN, LRANGE) is part of the pop right.
var verbRight = [...]auth.Right{
	VerbPush:      auth.RightPush,
	VerbPop:       auth.RightPop,
	VerbPeek:      auth.RightPop,
	VerbPublish:   auth.RightPublish,
	VerbSubscribe: auth.RightSubscribe,
	VerbAdmin:     auth.RightAdmin,
}

// Right returns the right a verb needs (0 for VerbNone).
func (v Verb) Right() auth.Right {
	if int(v) < len(verbRight) {
		return verbRight[v]
	}
	return 0
}

// targets returns the queue or channel names a command acts on: Spec.Targets when set, else the key
// positions (FirstKey, LastKey, KeyStep as in COMMAND INFO; a negative LastKey counts from the end).
func (s *Spec) targets(args [][]byte) [][]byte {
	if s.Targets != nil {
		return s.Targets(args)
	}
	if s.FirstKey <= 0 {
		return nil
	}
	last := s.LastKey
	if last < 0 {
		last = len(args) + last
	}
	step := s.KeyStep
	if step <= 0 {
		step = 1
	}
	var out [][]byte
	for i := s.FirstKey; i <= last && i < len(args); i += step {
		out = append(out, args[i])
	}
	return out
}

// argsFrom returns a Targets function for every argument from position i on.
func argsFrom(i int) func([][]byte) [][]byte {
	return func(args [][]byte) [][]byte { return args[i:] }
}

// argAt returns a Targets function for the single argument at position i.
func argAt(i int) func([][]byte) [][]byte {
	return func(args [][]byte) [][]byte { return args[i : i+1] }
}

// currentUser returns the connection's verified, enabled user, or nil.
func currentUser(c Conn, users *auth.Store) *auth.User {
	name := c.Session().AuthUser
	if name == "" {
		return nil
	}
	if u := users.Lookup(name); u != nil && u.Enabled {
		return u
	}
	return nil
}

// checkAccess returns the error reply for a command the connection may not run, or "". It runs after
// the lookup and arity checks and before the subscribed-state check, in Redis's order.
func checkAccess(c Conn, spec *Spec, args [][]byte) string {
	users := c.Server().Users()
	if !users.Required() {
		return "" // no users configured: qgate is open
	}
	u := currentUser(c, users)
	if u == nil {
		if spec.Flags&NoAuth != 0 {
			return ""
		}
		return ErrNoAuth
	}
	right := spec.Verb.Right()
	if right == 0 {
		return ""
	}
	if msg := checkTargets(c, u, spec, right, spec.targets(args)); msg != "" || spec.PushTargets == nil {
		return msg
	}
	return checkTargets(c, u, spec, auth.RightPush, spec.PushTargets(args))
}

// checkTargets returns the NOPERM reply for the first name u may not use with right, or "".
func checkTargets(c Conn, u *auth.User, spec *Spec, right auth.Right, names [][]byte) string {
	for _, nb := range names {
		name := string(nb)
		var ok bool
		kind := "queue"
		switch {
		case spec.PatternArgs:
			kind = "pattern"
			ok = u.MaySubscribePattern(name)
		default:
			if right == auth.RightPublish || right == auth.RightSubscribe {
				kind = "channel"
			}
			ok = u.Allowed(right, name)
		}
		if !ok {
			c.Server().NoteDenied(kind != "queue")
			return sanitize("NOPERM user '" + u.Name + "' has no '" + right.String() + "' right on " + kind + " '" + clip(nb, 128) + "'")
		}
	}
	return ""
}

// IsAdmin reports whether the connection may see everything (full INFO): always when no users are
// configured, else when its user has an admin right.
func IsAdmin(c Conn) bool {
	users := c.Server().Users()
	if !users.Required() {
		return true
	}
	u := currentUser(c, users)
	return u != nil && u.IsAdmin()
}

// login verifies credentials for AUTH and HELLO and makes the user the connection's on success. It
// returns the error reply for a refused login, or "".
func login(c Conn, user, password []byte) string {
	u, res := c.Login(user, password)
	switch {
	case res == auth.OK && u != nil:
	case res == auth.Busy:
		return ErrLoginBusy
	case res == auth.Cancelled:
		return ErrLoginInterrupted
	default:
		return ErrWrongPass
	}
	s := c.Session()
	s.AuthUser = u.Name
	s.User = u.Name
	s.Authed = true
	return ""
}
