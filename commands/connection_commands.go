package commands

import (
	"strconv"
	"time"
)

// RedisVersion is the Redis version whose behaviour qgate reproduces (reported by HELLO and INFO).
const RedisVersion = "7.0.15"

func init() {
	conn := Loading | Stale | Fast
	register(
		&Spec{Name: "auth", Arity: -2, Flags: NoAuth | conn, Group: "connection", Since: "1.0.0",
			Summary: "Authenticates the connection.",
			Args:    []Arg{{Name: "username", Type: "string", Optional: true}, {Name: "password", Type: "string"}}, Run: authCmd},
		&Spec{Name: "hello", Arity: -1, Flags: NoAuth | conn, Group: "connection", Since: "6.0.0",
			Summary: "Handshakes with the Redis server.",
			Args: []Arg{{Name: "arguments", Type: "block", Optional: true, Sub: []Arg{
				{Name: "protover", Type: "integer"},
				{Name: "username-password", Type: "block", Token: "AUTH", Optional: true, Sub: []Arg{{Name: "username", Type: "string"}, {Name: "password", Type: "string"}}},
				{Name: "clientname", Type: "string", Token: "SETNAME", Optional: true}}}},
			Run: hello},
		&Spec{Name: "ping", Arity: -1, Flags: NoAuth | conn | SubscribedOK, Group: "connection", Since: "1.0.0",
			Summary: "Returns the server's liveliness response.", Args: []Arg{{Name: "message", Type: "string", Optional: true}}, Run: ping},
		&Spec{Name: "echo", Arity: 2, Flags: conn, Group: "connection", Since: "1.0.0",
			Summary: "Returns the given string.", Args: []Arg{{Name: "message", Type: "string"}},
			Run: func(c Conn, args [][]byte) { c.Reply().Bulk(args[1]) }},
		&Spec{Name: "select", Arity: 2, Flags: conn, Group: "connection", Since: "1.0.0",
			Summary: "Changes the selected database (qgate serves database 0 of its backend).", Args: []Arg{{Name: "index", Type: "integer"}}, Run: selectDB},
		&Spec{Name: "quit", Arity: -1, Flags: NoAuth | conn | SubscribedOK, Group: "connection", Since: "1.0.0",
			Summary: "Closes the connection.", Run: func(c Conn, args [][]byte) {
				c.Reply().OK()
				c.Session().CloseAfter = true
			}},
		&Spec{Name: "reset", Arity: 1, Flags: NoAuth | conn | SubscribedOK, Group: "connection", Since: "6.2.0",
			Summary: "Resets the connection.", Run: reset},
		&Spec{Name: "client", Arity: -2, Group: "connection", Since: "2.4.0", Summary: "A container for client connection commands.",
			Subs: []*Spec{
				{Name: "client|setname", Arity: 3, Flags: conn, Summary: "Sets the connection name.", Since: "2.6.9",
					Args: []Arg{{Name: "connection-name", Type: "string"}}, Run: clientSetName},
				{Name: "client|getname", Arity: 2, Flags: conn, Summary: "Returns the name of the connection.", Since: "2.6.9", Run: clientGetName},
				{Name: "client|id", Arity: 2, Flags: conn, Summary: "Returns the unique client ID of the connection.", Since: "5.0.0",
					Run: func(c Conn, _ [][]byte) { c.Reply().Int(c.Session().ID) }},
				{Name: "client|info", Arity: 2, Flags: conn, Summary: "Returns information about the connection.", Since: "6.2.0",
					Run: func(c Conn, _ [][]byte) { c.Reply().Verbatim(ClientInfoLine(c.Session(), time.Now()) + "\n") }},
				{Name: "client|list", Arity: -2, Flags: Loading | Stale, Verb: VerbAdmin, Targets: allQueues, Since: "2.4.0",
					Summary: "Lists open connections.",
					Args: []Arg{{Name: "client-type", Type: "oneof", Token: "TYPE", Optional: true, Sub: []Arg{
						{Name: "normal", Type: "pure-token", Token: "NORMAL"}, {Name: "master", Type: "pure-token", Token: "MASTER"},
						{Name: "replica", Type: "pure-token", Token: "REPLICA"}, {Name: "pubsub", Type: "pure-token", Token: "PUBSUB"}}},
						{Name: "client-id", Type: "integer", Token: "ID", Optional: true, Multiple: true}},
					Run: clientList},
				{Name: "client|kill", Arity: -3, Flags: Loading | Stale, Verb: VerbAdmin, Targets: allQueues, Since: "2.4.0",
					Summary: "Terminates open connections.",
					Args: []Arg{{Name: "filter", Type: "oneof", Sub: []Arg{
						{Name: "ip:port", Type: "string"},
						{Name: "new-format", Type: "oneof", Multiple: true, Sub: []Arg{
							{Name: "client-id", Type: "integer", Token: "ID", Optional: true},
							{Name: "client-type", Type: "oneof", Token: "TYPE", Optional: true, Sub: []Arg{
								{Name: "normal", Type: "pure-token", Token: "NORMAL"}, {Name: "master", Type: "pure-token", Token: "MASTER"},
								{Name: "slave", Type: "pure-token", Token: "SLAVE"}, {Name: "replica", Type: "pure-token", Token: "REPLICA"},
								{Name: "pubsub", Type: "pure-token", Token: "PUBSUB"}}},
							{Name: "username", Type: "string", Token: "USER", Optional: true},
							{Name: "ip:port", Type: "string", Token: "ADDR", Optional: true},
							{Name: "ip:port", Type: "string", Token: "LADDR", Optional: true},
							{Name: "skipme", Type: "oneof", Token: "SKIPME", Optional: true, Sub: []Arg{
								{Name: "yes", Type: "pure-token", Token: "YES"}, {Name: "no", Type: "pure-token", Token: "NO"}}}}}}}},
					Run: clientKill},
				{Name: "client|unblock", Arity: -3, Flags: Loading | Stale | Fast, Since: "5.0.0",
					Summary: "Unblocks a client blocked by a blocking command from a different connection.",
					Args: []Arg{{Name: "client-id", Type: "integer"}, {Name: "unblock-type", Type: "oneof", Optional: true, Sub: []Arg{
						{Name: "timeout", Type: "pure-token", Token: "TIMEOUT"}, {Name: "error", Type: "pure-token", Token: "ERROR"}}}},
					Run: clientUnblock},
				{Name: "client|reply", Arity: 3, Flags: conn, Since: "3.2.0",
					Summary: "Instructs the server whether to reply to commands.",
					Args: []Arg{{Name: "action", Type: "oneof", Sub: []Arg{
						{Name: "on", Type: "pure-token", Token: "ON"}, {Name: "off", Type: "pure-token", Token: "OFF"}, {Name: "skip", Type: "pure-token", Token: "SKIP"}}}},
					Run: clientReply},
				{Name: "client|setinfo", Arity: 4, Flags: conn, Summary: "Sets information specific to the client or connection.", Since: "7.2.0",
					Args: []Arg{{Name: "attr", Type: "oneof", Sub: []Arg{{Name: "libname", Type: "string", Token: "LIB-NAME"}, {Name: "libver", Type: "string", Token: "LIB-VER"}}}},
					Run:  clientSetInfo},
				{Name: "client|no-evict", Arity: 3, Flags: conn, Summary: "Accepted for compatibility; qgate never evicts clients.", Since: "7.0.0",
					Run: func(c Conn, args [][]byte) { onOff(c, args[2], &c.Session().NoEvict) }},
				{Name: "client|no-touch", Arity: 3, Flags: conn, Summary: "Accepted for compatibility.", Since: "7.2.0",
					Run: func(c Conn, args [][]byte) { onOff(c, args[2], &c.Session().NoTouch) }},
				{Name: "client|getredir", Arity: 2, Flags: conn, Summary: "Returns -1: qgate does not do client-side caching.", Since: "6.0.0",
					Run: func(c Conn, _ [][]byte) { c.Reply().Int(-1) }},
				{Name: "client|tracking", Arity: -3, Flags: conn, Summary: "Accepts OFF and ON OPTIN (nothing is ever cached); refuses every other mode.", Since: "6.0.0",
					Run: clientTracking},
				{Name: "client|caching", Arity: 3, Flags: conn, Summary: "Refused: qgate does not support client-side caching.", Since: "6.0.0",
					Run: func(c Conn, _ [][]byte) {
						c.Reply().Error("ERR client-side caching (CLIENT CACHING) is not supported by qgate")
					}},
				{Name: "client|help", Arity: 2, Flags: conn, Summary: "Returns helpful text about the different subcommands.", Since: "5.0.0",
					Run: func(c Conn, _ [][]byte) {
						help(c.Reply(), "CLIENT", []string{
							"GETNAME", "    Return the name of the current connection.",
							"ID", "    Return the ID of the current connection.",
							"INFO", "    Return information about the current client connection.",
							"KILL <ip:port>", "    Kill connection made from <ip:port>.",
							"KILL <option> <value> [<option> <value> [...]]", "    Kill connections. Options are:",
							"    * ADDR (<ip:port>|<unixsocket>:0)", "      Kill connections made from the specified address",
							"    * LADDR (<ip:port>|<unixsocket>:0)", "      Kill connections made to specified local address",
							"    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)", "      Kill connections by type.",
							"    * USER <username>", "      Kill connections authenticated by <username>.",
							"    * SKIPME (YES|NO)", "      Skip killing current connection (default: yes).",
							"LIST [options ...]", "    Return information about client connections. Options:",
							"    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)", "      Return clients of specified type.",
							"REPLY (ON|OFF|SKIP)", "    Control the replies sent to the current connection.",
							"SETNAME <name>", "    Assign the name <name> to the current connection.",
							"SETINFO <option> <value>", "    Set client meta attr. Options are: LIB-NAME, LIB-VER.",
							"UNBLOCK <clientid> [TIMEOUT|ERROR]", "    Unblock the specified blocked client.",
							"NO-EVICT (ON|OFF)", "    Accepted; qgate never evicts clients.",
							"NO-TOUCH (ON|OFF)", "    Accepted.",
						})
					}},
			}},
	)
}

func authCmd(c Conn, args [][]byte) {
	if len(args) > 3 {
		c.Reply().Error(ErrSyntax)
		return
	}
	s := c.Session()
	if !c.Server().Users().Required() {
		// No users are configured: every login is accepted, so clients configured with a password
		// connect; the name given is only used as the producer in envelopes.
		s.Authed = true
		if len(args) == 3 {
			s.User = string(args[1])
		}
		c.Reply().OK()
		return
	}
	user, password := []byte("default"), args[1] // AUTH password logs in as "default", as in Redis
	if len(args) == 3 {
		user, password = args[1], args[2]
	}
	if e := login(c, user, password); e != "" {
		c.Reply().Error(e)
		return
	}
	c.Reply().OK()
}

// hello follows Redis 7's order: protocol version, options, authentication, the NOAUTH check, the
// client name, then the switch of protocol.
func hello(c Conn, args [][]byte) {
	s := c.Session()
	proto := s.Proto
	var user, password []byte
	var name string
	var setName, withAuth bool
	if len(args) >= 2 {
		v, err := strconv.ParseInt(string(args[1]), 10, 64)
		if err != nil {
			c.Reply().Error("ERR Protocol version is not an integer or out of range")
			return
		}
		if v < 2 || v > 3 {
			c.Reply().Error("NOPROTO unsupported protocol version")
			return
		}
		proto = int(v)
		for i := 2; i < len(args); i++ {
			more := len(args) - i - 1
			switch {
			case equalFold(args[i], "auth") && more >= 2:
				user, password, withAuth = args[i+1], args[i+2], true
				i += 2
			case equalFold(args[i], "setname") && more >= 1:
				name = string(args[i+1])
				setName = true
				i++
			default:
				c.Reply().Error(sanitize("ERR Syntax error in HELLO option '" + string(cstr(args[i])) + "'"))
				return
			}
		}
	}
	if c.Server().Users().Required() {
		if withAuth {
			if e := login(c, user, password); e != "" {
				c.Reply().Error(e)
				return
			}
		}
		if currentUser(c, c.Server().Users()) == nil {
			c.Reply().Error(ErrHelloAuth)
			return
		}
	} else if withAuth {
		s.User = string(user)
	}
	if setName && !validName(name) {
		c.Reply().Error("ERR Client names cannot contain spaces, newlines or special characters.")
		return
	}
	s.Authed = true
	if setName {
		s.Name = name
	}
	s.Proto = proto
	w := c.Reply()
	w.Proto = proto
	w.Map(7)
	w.BulkString("server")
	w.BulkString("redis")
	w.BulkString("version")
	w.BulkString(RedisVersion)
	w.BulkString("proto")
	w.Int(int64(proto))
	w.BulkString("id")
	w.Int(s.ID)
	w.BulkString("mode")
	w.BulkString("standalone")
	w.BulkString("role")
	w.BulkString("master")
	w.BulkString("modules")
	w.Array(0)
}

func ping(c Conn, args [][]byte) {
	s := c.Session()
	w := c.Reply()
	if len(args) > 2 {
		w.Error(WrongArgs("ping"))
		return
	}
	if s.Proto == 2 && s.Subscribed() {
		w.Array(2)
		w.BulkString("pong")
		if len(args) == 2 {
			w.Bulk(args[1])
		} else {
			w.BulkString("")
		}
		return
	}
	if len(args) == 1 {
		w.Simple("PONG")
		return
	}
	w.Bulk(args[1])
}

func selectDB(c Conn, args [][]byte) {
	n, err := strconv.ParseInt(string(args[1]), 10, 64)
	switch {
	case err != nil:
		c.Reply().Error(ErrNotInteger)
	case n != 0:
		c.Reply().Error("ERR DB index is out of range")
	default:
		c.Reply().OK()
	}
}

func reset(c Conn, _ [][]byte) {
	UnsubscribeAll(c)
	s := c.Session()
	s.Proto = 2
	s.Name = ""
	s.NoEvict, s.NoTouch = false, false
	s.Multi, s.ReplyOff, s.ReplySkip, s.ReplySkipNext = nil, false, false, false
	// As Redis, RESET returns to the default user: with users configured the connection must log in
	// again, unless its TLS client certificate names its user.
	s.User, s.AuthUser = s.CertUser, s.CertUser
	s.Authed = s.CertUser != "" || !c.Server().Users().Required()
	w := c.Reply()
	w.Proto = 2
	w.Simple("RESET")
}

func clientSetName(c Conn, args [][]byte) {
	name := string(args[2])
	if !validName(name) {
		c.Reply().Error("ERR Client names cannot contain spaces, newlines or special characters.")
		return
	}
	c.Session().Name = name
	c.Reply().OK()
}

func clientGetName(c Conn, _ [][]byte) {
	if n := c.Session().Name; n != "" {
		c.Reply().BulkString(n)
		return
	}
	c.Reply().Null()
}

func clientSetInfo(c Conn, args [][]byte) {
	s := c.Session()
	val := string(args[3])
	var dst *string
	var attr string
	switch {
	case equalFold(args[2], "lib-name"):
		dst, attr = &s.LibName, "lib-name"
	case equalFold(args[2], "lib-ver"):
		dst, attr = &s.LibVer, "lib-ver"
	default:
		c.Reply().Error(sanitize("ERR Unrecognized option '" + clip(args[2], 128) + "'"))
		return
	}
	if !validName(val) {
		c.Reply().Error("ERR " + attr + " cannot contain spaces, newlines or special characters.")
		return
	}
	*dst = val
	c.Reply().OK()
}

func onOff(c Conn, arg []byte, dst *bool) {
	switch {
	case equalFold(arg, "on"):
		*dst = true
	case equalFold(arg, "off"):
		*dst = false
	default:
		c.Reply().Error(ErrSyntax)
		return
	}
	c.Reply().OK()
}

// validName reports whether a client name or library attribute has only the characters Redis allows.
func validName(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '!' || s[i] > '~' {
			return false
		}
	}
	return true
}

// clientTracking accepts what caching clients send on connect without ever caching anything: OFF, and ON
// with OPTIN, under which no read is tracked unless CLIENT CACHING YES precedes it, which qgate refuses.
// Any other mode (default, BCAST, OPTOUT, REDIRECT) would promise invalidations qgate never sends.
func clientTracking(c Conn, args [][]byte) {
	switch {
	case equalFold(args[2], "off") && len(args) == 3:
		c.Reply().OK()
		return
	case equalFold(args[2], "on"):
		optin := false
		for _, a := range args[3:] {
			switch {
			case equalFold(a, "optin"):
				optin = true
			case equalFold(a, "noloop"):
			default:
				c.Reply().Error("ERR client-side caching (CLIENT TRACKING) is not supported by qgate; only ON OPTIN is accepted")
				return
			}
		}
		if optin {
			c.Reply().OK()
			return
		}
	case !equalFold(args[2], "off"):
		c.Reply().Error(ErrSyntax)
		return
	}
	c.Reply().Error("ERR client-side caching (CLIENT TRACKING) is not supported by qgate; only ON OPTIN is accepted")
}
