package auth

import (
	"context"
	"crypto/sha256"
	"math"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sync/semaphore"
	"golang.org/x/sync/singleflight"
)

// Defaults of the Authenticator.
const (
	DefaultCacheSize    = 4096  // verified credentials kept
	DefaultTrackedAddrs = 16384 // client addresses whose failures are remembered
	DefaultBaseDelay    = 50 * time.Millisecond
	DefaultMaxDelay     = 1500 * time.Millisecond
	DefaultHalfLife     = 30 * time.Second // failures are forgotten at this rate
	// DefaultPerAddrBcrypts bounds the bcrypt comparisons one client address runs at once.
	DefaultPerAddrBcrypts = 2
	// DefaultMaxWait bounds how long a login waits for its turn to run bcrypt before it is refused
	// with Busy (its password unchecked).
	DefaultMaxWait = 5 * time.Second
)

// DefaultBcrypts is the default bound on the bcrypt comparisons running at once over all addresses:
// half the CPUs Go uses, at least one, so a flood of wrong passwords leaves the other half to the
// clients that are logged in.
func DefaultBcrypts() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// Result is the outcome of a login.
type Result int

const (
	OK Result = iota
	// Failed: unknown user, disabled user or wrong password (one answer for all three).
	Failed
	// Cancelled: the context ended before the password was checked (shutdown, client gone).
	Cancelled
	// Busy: the login waited MaxWait for its turn to run bcrypt and gave up; the password was not
	// checked.
	Busy
)

// Authenticator verifies passwords against a Store that can be swapped at any time (config reload).
//
// A login whose credentials were verified before is answered from a cache and never waits. Any other
// login runs a bcrypt comparison, and those are bounded: at most perAddr at once for one client
// address and total at once overall, taken in arrival order (per address, then overall); a login
// waits for its turn at most MaxWait. A failed login's reply is then delayed (see failed), with no
// bcrypt slot held, so only the failing connection waits; a correct login is never delayed.
type Authenticator struct {
	store atomic.Pointer[Store]
	cache *lru.Cache[[sha256.Size]byte, struct{}]
	group singleflight.Group

	failMu sync.Mutex
	fails  *lru.Cache[string, *failScore]

	// BaseDelay, MaxDelay and HalfLife shape the delay of failed logins' replies per client address:
	// with n recent failures counting the one being answered, the reply waits BaseDelay·2^(n-1), at
	// most MaxDelay; the count halves every HalfLife without failures.
	BaseDelay, MaxDelay, HalfLife time.Duration
	// MaxWait bounds the wait for a bcrypt slot (see the type's comment).
	MaxWait time.Duration

	total   *semaphore.Weighted // bcrypt comparisons running, all addresses
	perAddr int64
	addrMu  sync.Mutex
	addrs   map[string]*addrSlots // addresses with logins waiting for or running bcrypt

	bcrypts  atomic.Int64 // bcrypt comparisons run (cache misses, dummy comparisons included)
	failures atomic.Int64 // failed logins
	running  atomic.Int64 // bcrypt comparisons running now
	peak     atomic.Int64 // the most that ever ran at once
	now      func() time.Time
	bcrypt   func(hash, password []byte) error // bcrypt.CompareHashAndPassword; tests slow it down
}

// addrSlots bounds one address's bcrypt comparisons; refs counts the logins using it.
type addrSlots struct {
	sem  *semaphore.Weighted
	refs int
}

type failScore struct {
	score float64
	at    time.Time
}

// NewAuthenticator returns an authenticator over st (nil: no users) with the default bounds.
func NewAuthenticator(st *Store) *Authenticator {
	a := &Authenticator{BaseDelay: DefaultBaseDelay, MaxDelay: DefaultMaxDelay, HalfLife: DefaultHalfLife,
		MaxWait: DefaultMaxWait, now: time.Now, bcrypt: bcrypt.CompareHashAndPassword, addrs: map[string]*addrSlots{}}
	a.cache, _ = lru.New[[sha256.Size]byte, struct{}](DefaultCacheSize)
	a.fails, _ = lru.New[string, *failScore](DefaultTrackedAddrs)
	a.SetConcurrency(DefaultBcrypts(), DefaultPerAddrBcrypts)
	a.store.Store(st)
	return a
}

// SetConcurrency sets how many bcrypt comparisons may run at once in total and per client address
// (each at least 1). Call it before the first Login.
func (a *Authenticator) SetConcurrency(total, perAddr int) {
	a.total = semaphore.NewWeighted(int64(max(1, total)))
	a.perAddr = int64(max(1, perAddr))
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

// BcryptPeak is the largest number of bcrypt comparisons that ever ran at once.
func (a *Authenticator) BcryptPeak() int64 { return a.peak.Load() }

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

// Login checks user's password. addr is the client's address (host:port or host): it keys the
// bcrypt bound per address and the delay of failed logins. ctx ends the login's waits: for a bcrypt
// slot (then the result is Cancelled) and the delay of a failure (then the result is still Failed,
// only sooner). ctx.Done is called only when the login has to wait. It returns the user on success.
func (a *Authenticator) Login(ctx context.Context, user, password, addr string) (*User, Result) {
	host := clientHost(addr)
	st := a.Store()
	u := st.Lookup(user)
	if u != nil && u.Enabled {
		switch r := a.verify(ctx, host, user, password, u.hash); r {
		case OK:
			return u, OK
		case Busy, Cancelled:
			return nil, r
		}
	} else if st != nil && st.dummy != nil {
		// As long as a wrong password (no user enumeration by timing).
		if r := a.check(ctx, host, st.dummy, password); r == Busy || r == Cancelled {
			return nil, r
		}
	}
	a.pause(ctx, a.failed(host))
	return nil, Failed
}

// verify checks password against hash through the cache; concurrent checks of the same credentials
// share one bcrypt comparison, which takes the slots of the first caller's address. Only successes
// are cached.
func (a *Authenticator) verify(ctx context.Context, host, user, password string, hash []byte) Result {
	key := cacheKey(user, password, hash)
	if _, ok := a.cache.Get(key); ok {
		return OK
	}
	for {
		v, _, _ := a.group.Do(string(key[:]), func() (any, error) {
			if _, ok := a.cache.Get(key); ok { // verified by a flight that just ended
				return OK, nil
			}
			r := a.check(ctx, host, hash, password)
			if r == OK {
				a.cache.Add(key, struct{}{})
			}
			return r, nil
		})
		r := v.(Result)
		if r != Cancelled || ctx.Err() != nil {
			return r
		}
		// The flight's first caller went away while waiting for a slot; this one is still here.
	}
}

// check runs one bcrypt comparison once a slot of host and an overall slot are free, in arrival
// order, waiting at most MaxWait for them.
func (a *Authenticator) check(ctx context.Context, host string, hash []byte, password string) Result {
	release, r := a.acquire(ctx, host)
	if r != OK {
		return r
	}
	defer release()
	if a.compare(hash, password) {
		return OK
	}
	return Failed
}

// acquire takes a bcrypt slot of host, then an overall one, and returns the function that gives
// both back. Without contention it touches neither ctx.Done nor a timer.
func (a *Authenticator) acquire(ctx context.Context, host string) (func(), Result) {
	a.addrMu.Lock()
	s := a.addrs[host]
	if s == nil {
		s = &addrSlots{sem: semaphore.NewWeighted(a.perAddr)}
		a.addrs[host] = s
	}
	s.refs++
	a.addrMu.Unlock()
	unref := func() {
		a.addrMu.Lock()
		if s.refs--; s.refs == 0 {
			delete(a.addrs, host)
		}
		a.addrMu.Unlock()
	}

	var deadline time.Time // both waits together take at most MaxWait
	wait := func(sem *semaphore.Weighted) Result {
		if sem.TryAcquire(1) { // fails while others wait: no overtaking
			return OK
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(a.MaxWait)
		}
		wctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		if err := sem.Acquire(wctx, 1); err != nil {
			if ctx.Err() != nil {
				return Cancelled
			}
			return Busy
		}
		return OK
	}
	if r := wait(s.sem); r != OK {
		unref()
		return nil, r
	}
	if r := wait(a.total); r != OK {
		s.sem.Release(1)
		unref()
		return nil, r
	}
	return func() {
		a.total.Release(1)
		s.sem.Release(1)
		unref()
	}, OK
}

// compare runs one bcrypt comparison (constant time in the password, as bcrypt's own final
// comparison is subtle.ConstantTimeCompare); the caller holds the slots.
func (a *Authenticator) compare(hash []byte, password string) bool {
	a.bcrypts.Add(1)
	n := a.running.Add(1)
	defer a.running.Add(-1)
	for p := a.peak.Load(); n > p && !a.peak.CompareAndSwap(p, n); p = a.peak.Load() {
	}
	return a.bcrypt(hash, []byte(password)) == nil
}

// failed counts a failed login from host and returns how long its reply waits: BaseDelay·2^(n-1)
// with n the address's recent failures, this one included; at most MaxDelay.
func (a *Authenticator) failed(host string) time.Duration {
	a.failures.Add(1)
	a.failMu.Lock()
	f, ok := a.fails.Get(host)
	if !ok {
		f = &failScore{}
		a.fails.Add(host, f)
	}
	f.score = a.decayed(f) + 1
	f.at = a.now()
	n := f.score
	a.failMu.Unlock()
	d := float64(a.BaseDelay) * math.Exp2(n-1)
	if d > float64(a.MaxDelay) {
		return a.MaxDelay
	}
	return time.Duration(d)
}

// pause waits d, or until ctx ends. Nothing is held: only the caller's connection waits.
func (a *Authenticator) pause(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
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
