package rdb

import (
	_ "embed"
	"strings"
)

// Scripts of the list edits and QPURGE (README "List edits"). list_match.lua defines matches(), the
// element-argument rule, and goes right after the flags line of each script that compares items.

var (
	//go:embed scripts/list_match.lua
	listMatchSrc string
	//go:embed scripts/list_pos.lua
	listPosSrc string
	//go:embed scripts/list_rem.lua
	listRemSrc string
	//go:embed scripts/list_insert.lua
	listInsertSrc string
	//go:embed scripts/list_pushx.lua
	listPushXSrc string
	//go:embed scripts/purge.lua
	purgeSrc string
)

// The list edit scripts.
var (
	ListPos    = newScript(withMatch(listPosSrc))
	ListRem    = newScript(withMatch(listRemSrc))
	ListInsert = newScript(withMatch(listInsertSrc))
	ListPushX  = newScript(listPushXSrc)
	Purge      = newScript(purgeSrc)
)

// withMatch returns src with list_match.lua inserted after its flags line (or first, without one).
func withMatch(src string) string {
	if strings.HasPrefix(src, flagsLine) {
		i := strings.IndexByte(src, '\n')
		return src[:i+1] + listMatchSrc + "\n" + src[i+1:]
	}
	return listMatchSrc + "\n" + src
}

// PurgeKeys returns KEYS[1..7] of purge.lua; the transit records are PurgeTransitPrefix(queue) and
// an owner's id.
func PurgeKeys(queue string) []string {
	return []string{queue, InflightKey(queue), LeasesKey(queue), DelayedKey(queue), DeadKey(queue),
		HandoffKey(queue), TransitOwnersKey(queue)}
}

// PurgeTransitPrefix is ARGV[1] of purge.lua: TransitKey(queue, owner) without the owner.
func PurgeTransitPrefix(queue string) string { return TransitKey(queue, "") }
