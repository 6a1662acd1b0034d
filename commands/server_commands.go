package commands

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/qgate/qgate/proxy/queue"
	"github.com/qgate/qgate/proxy/resp"
)

func init() {
	register(
		&Spec{Name: "command", Arity: -1, Flags: Loading | Stale, Group: "server", Since: "2.8.13",
			Summary: "Returns detailed information about all commands.", Run: commandAll,
			Subs: []*Spec{
				{Name: "command|count", Arity: 2, Flags: Loading | Stale, Since: "2.8.13", Summary: "Returns a count of commands.",
					Run: func(c Conn, _ [][]byte) { c.Reply().Int(int64(len(table))) }},
				{Name: "command|info", Arity: -2, Flags: Loading | Stale, Since: "2.8.13", Summary: "Returns information about one, multiple or all commands.",
					Args: []Arg{{Name: "command-name", Type: "string", Optional: true, Multiple: true}}, Run: commandInfo},
				{Name: "command|docs", Arity: -2, Flags: Loading | Stale, Since: "7.0.0", Summary: "Returns documentary information about one, multiple or all commands.",
					Args: []Arg{{Name: "command-name", Type: "string", Optional: true, Multiple: true}}, Run: commandDocs},
				{Name: "command|list", Arity: -2, Flags: Loading | Stale, Since: "7.0.0", Summary: "Returns a list of command names.", Run: commandList},
				{Name: "command|help", Arity: 2, Flags: Loading | Stale, Since: "5.0.0", Summary: "Returns helpful text about the different subcommands.",
					Run: func(c Conn, _ [][]byte) {
						help(c.Reply(), "COMMAND", []string{
							"(no subcommand)", "    Return details about all commands qgate supports.",
							"COUNT", "    Return the total number of commands qgate supports.",
							"DOCS [<command-name> ...]", "    Return documentary information about commands.",
							"INFO [<command-name> ...]", "    Return details about the given commands (all when none is given).",
							"LIST", "    Return the names of all commands qgate supports.",
						})
					}},
			}},
		&Spec{Name: "info", Arity: -1, Flags: Loading | Stale, Group: "server", Since: "1.0.0",
			Summary: "Returns information and statistics about qgate and its backend.",
			Args:    []Arg{{Name: "section", Type: "string", Optional: true, Multiple: true}}, Run: info},
	)
}

func sortSpecs(s []*Spec) { sort.Slice(s, func(i, j int) bool { return s[i].Name < s[j].Name }) }

func commandAll(c Conn, _ [][]byte) {
	all := All()
	w := c.Reply()
	w.Array(len(all))
	for _, s := range all {
		writeInfo(w, s)
	}
}

func commandInfo(c Conn, args [][]byte) {
	if len(args) == 2 {
		commandAll(c, args)
		return
	}
	w := c.Reply()
	w.Array(len(args) - 2)
	for _, name := range args[2:] {
		if s := Lookup(name); s != nil {
			writeInfo(w, s)
		} else {
			w.NullArray()
		}
	}
}

func commandList(c Conn, args [][]byte) {
	if len(args) > 2 {
		c.Reply().Error("ERR qgate does not support COMMAND LIST FILTERBY")
		return
	}
	all := All()
	w := c.Reply()
	w.Array(len(all))
	for _, s := range all {
		w.BulkString(s.Name)
	}
}

// writeInfo writes the ten-element COMMAND INFO entry of Redis 7.
func writeInfo(w *resp.Writer, s *Spec) {
	w.Array(10)
	w.BulkString(s.Name)
	w.Int(int64(s.Arity))
	flags := s.Flags.Names()
	w.Set(len(flags))
	for _, f := range flags {
		w.Simple(f)
	}
	w.Int(int64(s.FirstKey))
	w.Int(int64(s.LastKey))
	w.Int(int64(s.KeyStep))
	cats := aclCategories(s)
	w.Set(len(cats))
	for _, cat := range cats {
		w.Simple(cat)
	}
	// Redis 7.0 answers no tips, no key specifications and no subcommands with empty sets (~0 in
	// RESP3), subcommands with an array.
	w.Set(0) // tips
	w.Set(0) // key specifications
	if len(s.Subs) == 0 {
		w.Set(0)
		return
	}
	w.Array(len(s.Subs))
	for _, sub := range s.Subs {
		writeInfo(w, sub)
	}
}

func aclCategories(s *Spec) []string {
	var cats []string
	group := s.Group
	if group == "" {
		if i := strings.IndexByte(s.Name, '|'); i > 0 {
			if p := table[s.Name[:i]]; p != nil {
				group = p.Group
			}
		}
	}
	switch group {
	case "", "server":
	case "generic": // Redis's ACL category of the generic group (DEL, EXISTS, TYPE …)
		cats = append(cats, "@keyspace")
	default:
		cats = append(cats, "@"+group)
	}
	if group == "server" {
		cats = append(cats, "@slow")
	}
	switch {
	case s.Flags&Write != 0:
		cats = append(cats, "@write")
	case s.Flags&ReadOnly != 0:
		cats = append(cats, "@read")
	}
	if s.Flags&Fast != 0 {
		cats = append(cats, "@fast")
	}
	if s.Flags&Blocking != 0 {
		cats = append(cats, "@blocking")
	}
	return cats
}

func commandDocs(c Conn, args [][]byte) {
	var specs []*Spec
	if len(args) == 2 {
		specs = All()
	} else {
		for _, name := range args[2:] {
			if s := Lookup(name); s != nil {
				specs = append(specs, s)
			}
		}
	}
	w := c.Reply()
	w.Map(len(specs))
	for _, s := range specs {
		w.BulkString(s.Name)
		writeDoc(w, s)
	}
}

func writeDoc(w *resp.Writer, s *Spec) {
	group := s.Group
	if group == "" {
		group = "connection"
		if i := strings.IndexByte(s.Name, '|'); i > 0 && table[s.Name[:i]] != nil {
			group = table[s.Name[:i]].Group
		}
	}
	n := 3
	if len(s.Args) > 0 {
		n++
	}
	if len(s.Subs) > 0 {
		n++
	}
	w.Map(n)
	w.BulkString("summary")
	w.BulkString(s.Summary)
	w.BulkString("since")
	w.BulkString(s.Since)
	w.BulkString("group")
	w.BulkString(group)
	if len(s.Args) > 0 {
		w.BulkString("arguments")
		writeArgs(w, s.Args)
	}
	if len(s.Subs) > 0 {
		w.BulkString("subcommands")
		w.Map(len(s.Subs))
		for _, sub := range s.Subs {
			w.BulkString(sub.Name)
			writeDoc(w, sub)
		}
	}
}

func writeArgs(w *resp.Writer, args []Arg) {
	w.Array(len(args))
	for _, a := range args {
		n := 2
		var flags []string
		if a.Optional {
			flags = append(flags, "optional")
		}
		if a.Multiple {
			flags = append(flags, "multiple")
		}
		if a.Token != "" {
			n++
		}
		if len(flags) > 0 {
			n++
		}
		if len(a.Sub) > 0 {
			n++
		}
		if a.Type == "key" {
			n++
		}
		w.Map(n)
		w.BulkString("name")
		w.BulkString(a.Name)
		w.BulkString("type")
		w.BulkString(a.Type)
		if a.Type == "key" {
			w.BulkString("key_spec_index")
			w.Int(0)
		}
		if a.Token != "" {
			w.BulkString("token")
			w.BulkString(a.Token)
		}
		if len(flags) > 0 {
			w.BulkString("flags")
			w.Set(len(flags))
			for _, f := range flags {
				w.Simple(f)
			}
		}
		if len(a.Sub) > 0 {
			w.BulkString("arguments")
			writeArgs(w, a.Sub)
		}
	}
}

// info answers INFO with sections server, clients, stats, persistence and qgate.
func info(c Conn, args [][]byte) {
	want := map[string]bool{}
	for _, a := range args[1:] {
		want[strings.ToLower(string(a))] = true
	}
	// As Redis 7: no argument or "default" is the default sections (not commandstats); "all" and
	// "everything" are every section.
	all := want["all"] || want["everything"]
	dflt := all || len(want) == 0 || want["default"]
	// Without an admin right a user sees only Server, Clients and Persistence (redis_version and
	// loading:0 are what client libraries such as ioredis read before they report ready).
	admin := IsAdmin(c)
	st := c.Server().Stats()
	now := time.Now()
	var b strings.Builder
	section := func(name string, lines ...string) {
		inDefault := name != "Commandstats"
		if !all && !(dflt && inDefault) && !want[strings.ToLower(name)] {
			return
		}
		if !admin && name != "Server" && name != "Clients" && name != "Persistence" {
			return
		}
		if b.Len() > 0 {
			b.WriteString("\r\n")
		}
		b.WriteString("# " + name + "\r\n")
		for _, l := range lines {
			b.WriteString(l)
			b.WriteString("\r\n")
		}
	}
	up := now.Sub(st.Started)
	section("Server",
		"redis_version:"+RedisVersion,
		"redis_mode:standalone",
		"qgate_version:"+st.Version,
		"os:"+runtime.GOOS+" "+runtime.GOARCH,
		"arch_bits:64",
		"go_version:"+runtime.Version(),
		fmt.Sprintf("process_id:%d", os.Getpid()),
		fmt.Sprintf("tcp_port:%d", st.TCPPort),
		fmt.Sprintf("uptime_in_seconds:%d", int64(up/time.Second)),
		fmt.Sprintf("uptime_in_days:%d", int64(up/(24*time.Hour))),
	)
	section("Clients",
		fmt.Sprintf("connected_clients:%d", st.ConnectedClients),
		fmt.Sprintf("maxclients:%d", st.MaxClients),
		fmt.Sprintf("blocked_clients:%d", st.BlockedClients),
		fmt.Sprintf("pubsub_clients:%d", st.PubSubClients),
	)
	section("Persistence", "loading:0")
	section("Stats",
		fmt.Sprintf("total_connections_received:%d", st.TotalConnections),
		fmt.Sprintf("total_commands_processed:%d", st.TotalCommands),
		fmt.Sprintf("rejected_connections:%d", st.RejectedConns),
		fmt.Sprintf("acl_access_denied_auth:%d", st.AuthFailures),
		"acl_access_denied_cmd:0",
		fmt.Sprintf("acl_access_denied_key:%d", st.DeniedQueue),
		fmt.Sprintf("acl_access_denied_channel:%d", st.DeniedChannel),
		fmt.Sprintf("total_error_replies:%d", c.Server().CommandStats().ErrorReplies()),
	)
	section("Replication", "role:master", "connected_slaves:0")
	if all || want["commandstats"] {
		section("Commandstats", c.Server().CommandStats().commandstatsLines()...)
	}
	if dflt || want["errorstats"] {
		section("Errorstats", c.Server().CommandStats().errorstatsLines()...)
	}
	kind, addr := c.Server().BackendInfo()
	var gaps queue.PubSubGaps // the pub/sub hub's lost backend subscriptions (README "Pub/sub across failures")
	if e := c.Server().Queues(); e != nil {
		gaps = e.PubSubGaps()
	}
	down := 0
	if gaps.Down {
		down = 1
	}
	section("Qgate",
		"backend_kind:"+kind,
		"backend_addr:"+addr,
		fmt.Sprintf("backend_pool_conns:%d", st.BackendConns),
		fmt.Sprintf("backend_wait_conns:%d", st.BackendWaitConns),
		fmt.Sprintf("backend_pubsub_conns:%d", st.BackendPubSubConns),
		fmt.Sprintf("returned_items:%d", st.ReturnedItems),
		fmt.Sprintf("lost_items:%d", st.LostItems),
		fmt.Sprintf("recovered_items:%d", st.RecoveredItems),
		fmt.Sprintf("redelivery_risk_items:%d", st.RedeliveryRisk),
		"instance_id:"+st.Instance,
		fmt.Sprintf("leased_items:%d", st.Leased),
		fmt.Sprintf("acked_items:%d", st.Acked),
		fmt.Sprintf("retried_items:%d", st.Retried),
		fmt.Sprintf("dead_items:%d", st.Dead),
		fmt.Sprintf("redriven_items:%d", st.Redriven),
		fmt.Sprintf("known_queues:%d", st.KnownQueues),
		fmt.Sprintf("users:%d", st.Users),
		fmt.Sprintf("auth_bcrypt_checks:%d", st.BcryptChecks),
		fmt.Sprintf("blocked_waiters:%d", st.Wait.Waiters),
		fmt.Sprintf("blocked_watched_keys:%d", st.Wait.WatchedKeys),
		"blocked_wait_mode:"+st.Wait.Mode,
		fmt.Sprintf("blocked_keyspace_nodes:%d", st.Wait.KeyspaceNodes),
		fmt.Sprintf("blocked_poll_nodes:%d", st.Wait.PollNodes),
		fmt.Sprintf("blocked_takes:%d", st.Wait.Takes),
		fmt.Sprintf("blocked_empty_takes:%d", st.Wait.EmptyTakes),
		fmt.Sprintf("blocked_take_errors:%d", st.Wait.TakeErrors),
		fmt.Sprintf("blocked_given_back:%d", st.Wait.GivenBack),
		fmt.Sprintf("blocked_notifications:%d", st.Wait.Notifications),
		fmt.Sprintf("blocked_polled_keys:%d", st.Wait.Polled),
		fmt.Sprintf("blocked_pubsub_reconnects:%d", st.Wait.Reconnects),
		fmt.Sprintf("blocked_fifo_later_takes:%d", st.Wait.LaterTakes),
		fmt.Sprintf("blocked_fifo_dropped_places:%d", st.FIFODropped),
		fmt.Sprintf("blocked_fifo_unremoved_places:%d", st.FIFOUnremoved),
		fmt.Sprintf("pubsub_resubscribes:%d", gaps.Resubscribes),
		fmt.Sprintf("pubsub_gap_ms:%d", gaps.Gap.Milliseconds()),
		fmt.Sprintf("pubsub_missed_messages:%d", gaps.Missed),
		fmt.Sprintf("pubsub_backend_down:%d", down),
	)
	c.Reply().Verbatim(b.String())
}
