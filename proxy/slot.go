package proxy

import (
	"strconv"
	"strings"
	"sync"
)

// Redis Cluster key slots (CRC16/XMODEM of the key or of its {hash tag}, modulo 16384).

const numSlots = 16384

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

// keySlot returns the cluster slot of key, honouring a non-empty {hash tag}.
func keySlot(key string) uint16 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return crc16(key) % numSlots
}

var (
	slotTagsOnce sync.Once
	slotTags     [numSlots]string
)

// slotTag returns a short string whose slot is slot, for building keys that must live on it.
func slotTag(slot uint16) string {
	slotTagsOnce.Do(func() {
		left := numSlots
		for i := 0; left > 0; i++ {
			s := strconv.Itoa(i)
			if k := crc16(s) % numSlots; slotTags[k] == "" {
				slotTags[k] = s
				left--
			}
		}
	})
	return slotTags[slot]
}
