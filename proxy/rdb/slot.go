package rdb

import (
	"strings"
)

// Redis Cluster key slots (CRC16/XMODEM of the key or of its {hash tag}, modulo 16384): see "Key
// distribution model" and "Hash tags" in the Redis Cluster specification.

// NumSlots is the number of Redis Cluster hash slots.
const NumSlots = 16384

var crcTable = func() (t [256]uint16) {
	for i := range t {
		crc := uint16(i) << 8
		for j := 0; j < 8; j++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
		t[i] = crc
	}
	return t
}()

func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc = crc<<8 ^ crcTable[byte(crc>>8)^s[i]]
	}
	return crc
}

// HashTag returns key's Redis Cluster hash tag and true, or "" and false when the whole key is hashed.
// The tag is the bytes between the first '{' and the first '}' after it, when there are any (Redis
// src/cluster.c keyHashSlot). This is the one place qgate applies the rule: the key builders of
// rdb.go (QueueKey) and CheckName use it.
func HashTag(key string) (string, bool) {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j], true
		}
	}
	return "", false
}

// Slot returns the cluster slot of key, as CLUSTER KEYSLOT does: the slot of its {hash tag} when it
// has one (HashTag), else of the whole key.
func Slot(key string) uint16 {
	if tag, ok := HashTag(key); ok {
		key = tag
	}
	return crc16(key) % NumSlots
}
