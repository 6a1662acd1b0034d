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

// Slot returns the cluster slot of key, as CLUSTER KEYSLOT does: the slot of its {hash tag} (the
// bytes between the first '{' and the first '}' after it) when that tag is not empty, else of the
// whole key.
func Slot(key string) uint16 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return crc16(key) % NumSlots
}
