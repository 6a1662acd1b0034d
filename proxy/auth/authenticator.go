package auth

import (
	"context"
	"crypto/sha256"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sync/singleflight"
)

// Defaults of the Authenticator.
const (
	DefaultCacheSize    = 4096  // verified credentials kept
	DefaultTrackedAddrs = 16384 // client addresses whose failures are remembered
	DefaultBaseDelay    = 50 * time.Millisecond
	DefaultMaxDelay     = 1500 * time.Millisecond
	DefaultHalfLife     = 30 * time.Second // failures are forgotten at this rate
)

// Result is the outcome of a login.
type Result int

const (
	OK Result = iota
	// Failed: unknown user, disabled user or wrong password (one answer for all three).
	Failed
	// Cancelled: the context ended while the login was slowed down.
	Cancelled
)

// Authenticator verifies passwords against a Store that can be swapped at any time (config reload).
type Authenticator struct {
	store atomic.Pointer[Store]
	cache *lru.Cache[[sha256.Size]byte, struct{}]
	group singleflight.Group

	failMu sync.Mutex
	fails  *lru.Cache[string, *failScore]

	// BaseDelay, MaxDelay and HalfLife shape the slow-down of failed logins per client address:
	// after n recent failures the next attempt waits BaseDelay·2^(n-1), at most MaxDelay; the count
	// halves every HalfLife without failures.
	BaseDelay, MaxDelay, HalfLife time.Duration

	bcrypts  atomic.Int64 // bcrypt comparisons run (cache misses, dummy comparisons included)
	failures atomic.Int64 // failed logins
	now      func() time.Time
}

type failScore struct {
	score float64
	at    time.Time
}

// NewAuthenticator returns an authenticator over st (nil: no users).
func NewAuthenticator(st *Store) *Authenticator {
	a := &Authenticator{BaseDelay: DefaultBaseDelay, MaxDelay: DefaultMaxDelay, HalfLife: DefaultHalfLife, now: time.Now}
	a.cache, _ = lru.New[[sha256.Size]byte, struct{}](DefaultCacheSize)
	a.fails, _ = lru.New[string, *failScore](DefaultTrackedAddrs)
	a.store.Store(st)
	return a
}

// Store returns the current user store.
func (a *Authenticator) Store() *Store { return a.store.Load() }

// SetStore swaps the user store (config reload) and forgets every cached verification.
func (a *Authenticator) SetStore(st *Store) {
	a.store.Store(st)
	a.cache.Purge()
}

// BcryptVerifications is the number of bcrypt comparisons run so far.
func (a *Authenticator) BcryptVerifications() int64 { return a.bcrypts.Load() }

// Failures is the number of failed logins so far.
func (a *Authenticator) Failures() int64 { return a.failures.Load() }

// cacheKey binds a verification to the user, the password and the hash it was checked against, so a
// changed password or hash never hits an old entry. Only the digest is kept in memory.
func cacheKey(user, password string, hash []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(user))
	h.Write([]byte{0})
	h.Write([]byte(password))
	h.Write([]byte{0})
	h.Write(hash)
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// Login checks user's password. addr is the client's address (host:port or host) for the
// failed-login slow-down; ctx cancels the wait of a slowed-down attempt. It returns the user on
// success.
func (a *Authenticator) Login(ctx context.Context, user, password, addr string) (*User, Result) {
	host := clientHost(addr)
	if d := a.delay(host); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, Cancelled
		}
	}
	st := a.Store()
	u := st.Lookup(user)
	if u == nil || !u.Enabled {
		if st != nil && st.dummy != nil {
			a.compare(st.dummy, password) // as long as a wrong password (no user enumeration by timing)
		}
		a.failed(host)
		return nil, Failed
	}
	if a.verify(user, password, u.hash) {
		return u, OK
	}
	a.failed(host)
	return nil, Failed
}

// verify checks password against hash through the cache; concurrent checks of the same credentials
// share one bcrypt comparison. Only successes are cached.
func (a *Authenticator) verify(user, password string, hash []byte) bool {
	key := cacheKey(user, password, hash)
	if _, ok := a.cache.Get(key); ok {
		return true
	}
	v, _, _ := a.group.Do(string(key[:]), func() (any, error) {
		if _, ok := a.cache.Get(key); ok { // verified by a flight that just ended
			return true, nil
		}
		ok := a.compare(hash, password)
		if ok {
			a.cache.Add(key, struct{}{})
		}
		return ok, nil
	})
	return v.(bool)
}

// compare runs one bcrypt comparison (constant time in the password, as bcrypt's own final
// comparison is subtle.ConstantTimeCompare).
func (a *Authenticator) compare(hash []byte, password string) bool {
	a.bcrypts.Add(1)
	return bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil
}

// delay returns how long an attempt from host waits because of its recent failures.
func (a *Authenticator) delay(host string) time.Duration {
	a.failMu.Lock()
	f, ok := a.fails.Get(host)
	var n float64
	if ok {
		n = a.decayed(f)
	}
	a.failMu.Unlock()
	if n < 1 {
		return 0
	}
	d := float64(a.BaseDelay) * math.Pow(2, n-1)
	if d > float64(a.MaxDelay) {
		return a.MaxDelay
	}
	return time.Duration(d)
}

// failed counts a failed login from host.
func (a *Authenticator) failed(host string) {
	a.failures.Add(1)
	a.failMu.Lock()
	defer a.failMu.Unlock()
	f, ok := a.fails.Get(host)
	if !ok {
		f = &failScore{}
		a.fails.Add(host, f)
	}
	f.score = a.decayed(f) + 1
	f.at = a.now()
}

// decayed is the failure score of f now; failMu is held.
func (a *Authenticator) decayed(f *failScore) float64 {
	if f.score == 0 || a.HalfLife <= 0 {
		return f.score
	}
	age := a.now().Sub(f.at)
	return f.score * math.Exp2(-float64(age)/float64(a.HalfLife))
}

// clientHost is the host part of addr (the port changes on every reconnect).
func clientHost(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
