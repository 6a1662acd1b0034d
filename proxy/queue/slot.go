package queue

// Redis Cluster slots of keys: the blocker groups listeners by slot and builds wake keys on a slot.
// The proxy package provides the functions (KeySlot, SlotTag) until they live in proxy/rdb.

var (
	// KeySlot returns the cluster slot of a key, honouring a {hash tag}.
	KeySlot func(key string) uint16
	// SlotTag returns a short string whose slot is slot.
	SlotTag func(slot uint16) string
)

func keySlot(key string) uint16 { return KeySlot(key) }

func slotTag(slot uint16) string { return SlotTag(slot) }
