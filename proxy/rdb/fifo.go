package rdb

import _ "embed"

// Keys and script of global_fifo queues (README "Delivery rules", proxy/DESIGN.md "Global FIFO"):
// blocked pops served in the order they started to wait across every qgate instance.

// WaitersKey is the ZSET of a global_fifo queue's blocked pops on every instance, member → µs since
// the epoch when it started to wait.
func WaitersKey(queue string) string { return QueueKey(queue, "waiters") }

// TurnKey is the STRING "<ms>|<member>" that times how long the head of WaitersKey has held items
// back from the waiters behind it.
func TurnKey(queue string) string { return QueueKey(queue, "turn") }

// FIFOTurnKeys returns KEYS[1..4] of fifo_turn.lua.
func FIFOTurnKeys(queue string) []string {
	return []string{queue, WaitersKey(queue), TurnKey(queue), PausedKey(queue)}
}

//go:embed scripts/fifo_turn.lua
var fifoTurnSrc string

// FIFOTurn is scripts/fifo_turn.lua.
var FIFOTurn = newScript(fifoTurnSrc)
