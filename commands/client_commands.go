package commands

import (
	"fmt"

	"github.com/qgate/qgate/proxy/auth"
	"sort"
	"strconv"
	"strings"
	"time"
)

// CLIENT LIST and CLIENT KILL (README "Commands"): Redis 7.0's syntax and replies (networking.c,
// clientCommand), over the connections of this qgate instance. With users configured both need the
// admin right on every queue ("*"), as GET /api/v1/clients.

// ClientInfo is a connection as CLIENT LIST shows it. Server.Clients builds them from copies of the
// connections' state that their goroutines publish after each command.
type ClientInfo struct {
	ID                  int64
	Addr, LocalAddr     string
	Name, User          string // User: as in the user= field ("" = "default")
	LibName, LibVer     string
	LastCmd             string // "" = NULL
	Created, LastActive time.Time
	Channels, Patterns  int
	ShardChannels       int
	Blocked             bool
	Proto               int
}

// infoOf is the connection's own ClientInfo, from its session.
func infoOf(s *Session, now time.Time) ClientInfo {
	return ClientInfo{ID: s.ID, Addr: s.Addr, LocalAddr: s.LocalAddr, Name: s.Name, User: s.User, LibName: s.LibName,
		LibVer: s.LibVer, LastCmd: s.LastCmd, Created: s.Created, LastActive: now, Channels: len(s.Channels),
		Patterns: len(s.Patterns), ShardChannels: len(s.ShardChannels), Proto: s.Proto}
}

// userName is the user= field.
func (ci *ClientInfo) userName() string {
	if ci.User == "" {
		return "default"
	}
	return ci.User
}

// pubsub reports whether the client is of type pubsub (Redis's CLIENT_PUBSUB: any subscription, shard
// channels included).
func (ci *ClientInfo) pubsub() bool { return ci.Channels+ci.Patterns+ci.ShardChannels > 0 }

// Line formats the client like a line of Redis's CLIENT LIST (without the newline).
func (ci *ClientInfo) Line(now time.Time) string {
	flags := ""
	if ci.pubsub() {
		flags += "P"
	}
	if ci.Blocked {
		flags += "b"
	}
	if flags == "" {
		flags = "N"
	}
	cmd := ci.LastCmd
	if cmd == "" {
		cmd = "NULL"
	}
	idle := now.Sub(ci.LastActive)
	if idle < 0 {
		idle = 0
	}
	return fmt.Sprintf("id=%d addr=%s laddr=%s fd=-1 name=%s age=%d idle=%d flags=%s db=0 sub=%d psub=%d ssub=%d multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd=%s user=%s redir=-1 resp=%d lib-name=%s lib-ver=%s",
		ci.ID, ci.Addr, ci.LocalAddr, ci.Name, int64(now.Sub(ci.Created)/time.Second), int64(idle/time.Second), flags,
		ci.Channels, ci.Patterns, ci.ShardChannels, cmd, ci.userName(), ci.Proto, ci.LibName, ci.LibVer)
}

// ClientInfoLine formats a session like a line of Redis's CLIENT LIST (CLIENT INFO).
func ClientInfoLine(s *Session, now time.Time) string {
	ci := infoOf(s, now)
	return ci.Line(now)
}

// clients returns every connection sorted by id (Redis lists them in connection order), the caller's
// own from its session (its published copy is one command old).
func clients(c Conn, now time.Time) []ClientInfo {
	all := c.Server().Clients()
	self := c.Session()
	for i := range all {
		if all[i].ID == self.ID {
			all[i] = infoOf(self, now)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	return all
}

// Client types of CLIENT LIST TYPE and CLIENT KILL TYPE (Redis's getClientTypeByName). qgate has no
// replication links: only normal and pubsub clients exist.
const (
	typeNormal = iota
	typeReplica
	typePubSub
	typeMaster
)

func clientType(arg []byte) int {
	switch {
	case equalFold(arg, "normal"):
		return typeNormal
	case equalFold(arg, "slave"), equalFold(arg, "replica"):
		return typeReplica
	case equalFold(arg, "pubsub"):
		return typePubSub
	case equalFold(arg, "master"):
		return typeMaster
	}
	return -1
}

func (ci *ClientInfo) typ() int {
	if ci.pubsub() {
		return typePubSub
	}
	return typeNormal
}

func unknownType(arg []byte) string {
	return sanitize("ERR Unknown client type '" + string(cstr(arg)) + "'")
}

// clientList is CLIENT LIST [TYPE type | ID id [id ...]].
func clientList(c Conn, args [][]byte) {
	now := time.Now()
	typ := -1
	var ids []int64
	switch {
	case len(args) == 4 && equalFold(args[2], "type"):
		if typ = clientType(args[3]); typ == -1 {
			c.Reply().Error(unknownType(args[3]))
			return
		}
	case len(args) > 3 && equalFold(args[2], "id"):
		for _, a := range args[3:] {
			id, err := strconv.ParseInt(string(a), 10, 64)
			if err != nil {
				c.Reply().Error("ERR Invalid client ID")
				return
			}
			ids = append(ids, id)
		}
	case len(args) != 2:
		c.Reply().Error(ErrSyntax)
		return
	}
	all := clients(c, now)
	var b strings.Builder
	if ids != nil {
		// In the order asked, each time it is asked, as Redis.
		for _, id := range ids {
			if i := sort.Search(len(all), func(i int) bool { return all[i].ID >= id }); i < len(all) && all[i].ID == id {
				b.WriteString(all[i].Line(now))
				b.WriteByte('\n')
			}
		}
	} else {
		for i := range all {
			if typ == -1 || all[i].typ() == typ {
				b.WriteString(all[i].Line(now))
				b.WriteByte('\n')
			}
		}
	}
	c.Reply().Verbatim(b.String())
}

// clientKill is CLIENT KILL ip:port (old form: +OK, or an error when no client matched; a client may
// kill itself) and CLIENT KILL <filter> <value> ... (new form: the number of clients killed; SKIPME
// yes by default).
func clientKill(c Conn, args [][]byte) {
	var addr, laddr, user *string
	typ := -1
	var id int64
	skipme := true
	str := func(b []byte) *string { s := string(b); return &s }
	if len(args) == 3 {
		addr, skipme = str(args[2]), false
	} else {
		for i := 2; i < len(args); i += 2 {
			if i+1 >= len(args) {
				c.Reply().Error(ErrSyntax)
				return
			}
			v := args[i+1]
			switch {
			case equalFold(args[i], "id"):
				n, err := strconv.ParseInt(string(v), 10, 64)
				if err != nil || n < 1 {
					c.Reply().Error("ERR client-id should be greater than 0")
					return
				}
				id = n
			case equalFold(args[i], "type"):
				if typ = clientType(v); typ == -1 {
					c.Reply().Error(unknownType(v))
					return
				}
			case equalFold(args[i], "addr"):
				addr = str(v)
			case equalFold(args[i], "laddr"):
				laddr = str(v)
			case equalFold(args[i], "user"):
				if !userExists(c, string(v)) {
					c.Reply().Error(sanitize("ERR No such user '" + string(cstr(v)) + "'"))
					return
				}
				user = str(v)
			case equalFold(args[i], "skipme"):
				switch {
				case equalFold(v, "yes"):
					skipme = true
				case equalFold(v, "no"):
					skipme = false
				default:
					c.Reply().Error(ErrSyntax)
					return
				}
			default:
				c.Reply().Error(ErrSyntax)
				return
			}
		}
	}
	s := c.Session()
	var kill []int64
	self := false
	for _, ci := range clients(c, time.Now()) {
		switch {
		case addr != nil && ci.Addr != *addr,
			laddr != nil && ci.LocalAddr != *laddr,
			typ != -1 && ci.typ() != typ,
			id != 0 && ci.ID != id,
			user != nil && ci.userName() != *user,
			ci.ID == s.ID && skipme:
			continue
		}
		if ci.ID == s.ID {
			self = true
		} else {
			kill = append(kill, ci.ID)
		}
	}
	killed := 0
	if len(kill) > 0 {
		killed = c.Server().Kill(kill)
	}
	if self {
		killed++
		s.CloseAfter = true // after this reply, as Redis's CLIENT_CLOSE_AFTER_REPLY
	}
	if len(args) == 3 {
		if killed == 0 {
			c.Reply().Error("ERR No such client")
		} else {
			c.Reply().OK()
		}
		return
	}
	c.Reply().Int(int64(killed))
}

// userExists reports whether CLIENT KILL USER may name the user: a configured user, or, with no users
// configured (every login accepted), "default" and any name a client logged in with.
func userExists(c Conn, name string) bool {
	users := c.Server().Users()
	if users.Required() {
		return users.Lookup(name) != nil
	}
	if name == "default" {
		return true
	}
	for _, ci := range c.Server().Clients() {
		if ci.User == name {
			return true
		}
	}
	return c.Session().User == name
}

// allQueues is the target of CLIENT LIST and CLIENT KILL's rights check: the admin right on every queue.
func allQueues([][]byte) [][]byte { return [][]byte{[]byte("*")} }

// clientUnblock is CLIENT UNBLOCK client-id [TIMEOUT|ERROR] (Redis 7.0's clientCommand: the reason is
// checked before the id; :1 if the client was blocked, else :0). With users configured a client may
// unblock its own user's connections, or any with the admin right on every queue ("*"); another
// user's connection is answered :0, as if it were not blocked.
func clientUnblock(c Conn, args [][]byte) {
	if len(args) > 4 {
		c.Reply().Error("ERR unknown subcommand or wrong number of arguments for 'UNBLOCK'. Try CLIENT HELP.")
		return
	}
	asError := false
	if len(args) == 4 {
		switch {
		case equalFold(args[3], "timeout"):
		case equalFold(args[3], "error"):
			asError = true
		default:
			c.Reply().Error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
			return
		}
	}
	id, ok := ParseLong(args[2])
	if !ok {
		c.Reply().Error(ErrNotInteger)
		return
	}
	users := c.Server().Users()
	may := func(string) bool { return true }
	if users.Required() {
		u := currentUser(c, users)
		admin := u != nil && u.Allowed(auth.RightAdmin, "*")
		own := c.Session().AuthUser
		may = func(user string) bool { return admin || user == own }
	}
	if id != c.Session().ID && c.Server().Unblock(id, asError, may) {
		c.Reply().Int(1)
		return
	}
	c.Reply().Int(0)
}

// clientReply is CLIENT REPLY ON|OFF|SKIP: OFF and SKIP have no reply of their own; the connection
// drops replies as Session.ReplyOff and ReplySkip say.
func clientReply(c Conn, args [][]byte) {
	s := c.Session()
	switch {
	case equalFold(args[2], "on"):
		s.ReplyOff, s.ReplySkip, s.ReplySkipNext = false, false, false
		c.Reply().OK()
	case equalFold(args[2], "off"):
		s.ReplyOff = true
	case equalFold(args[2], "skip"):
		if !s.ReplyOff {
			s.ReplySkipNext = true
		}
	default:
		c.Reply().Error(ErrSyntax)
	}
}
