package proxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The mission's pattern, unchanged programs: a web app RPUSHes JSON email tasks onto email_queue and a
// worker loops on BLPOP email_queue 0 and sends the mail.

type e2eEmailTask struct {
	Receiver string `json:"receiver"`
	Content  string `json:"content"`
}

func e2eEmailTasks(n int) []e2eEmailTask {
	tasks := make([]e2eEmailTask, n)
	for i := range tasks {
		tasks[i] = e2eEmailTask{
			Receiver: fmt.Sprintf("user%03d@example.com", i),
			Content:  fmt.Sprintf("Hello #%d: ünïcödé 🎉, \"quotes\", back\\slash,\r\nnew line, tab\t, NUL \x00 end", i),
		}
	}
	return tasks
}

// e2eWorker is the worker program: BLPOP email_queue 0 forever, decode, "send" (record). It stops after
// max tasks or when BLPOP fails (qgate shut down at the end of a failed test).
func e2eWorker(ctx context.Context, rdb *redis.Client, max int, sent chan<- e2eEmailTask, errs chan<- error) {
	for i := 0; i < max; i++ {
		res, err := rdb.BLPop(ctx, 0, "email_queue").Result()
		if err != nil {
			errs <- fmt.Errorf("BLPOP: %w", err)
			return
		}
		if res[0] != "email_queue" {
			errs <- fmt.Errorf("BLPOP returned key %q", res[0])
			return
		}
		var task e2eEmailTask
		if err := json.Unmarshal([]byte(res[1]), &task); err != nil {
			errs <- fmt.Errorf("decode %q: %w", res[1], err)
			return
		}
		sent <- task
	}
}

func TestWorker_EmailQueue(t *testing.T) {
	e2eProtos(t, func(t *testing.T, proto int) {
		e := e2eStart(t)
		ctx := e2eCtx(t)
		webapp, worker := e.Client(t, proto), e.Client(t, proto)
		const n = 200
		tasks := e2eEmailTasks(n)

		sent := make(chan e2eEmailTask, n)
		errs := make(chan error, 1)
		go e2eWorker(ctx, worker, n, sent, errs)
		e2eWaitBlocked(t, webapp, 1) // the worker waits on an empty queue before the first task

		go func() {
			for i, task := range tasks {
				body, err := json.Marshal(task)
				if err != nil {
					errs <- err
					return
				}
				if err := webapp.RPush(ctx, "email_queue", body).Err(); err != nil {
					errs <- fmt.Errorf("RPUSH task %d: %w", i, err)
					return
				}
			}
		}()

		deadline := time.After(30 * time.Second)
		for i := 0; i < n; i++ {
			select {
			case got := <-sent:
				if got != tasks[i] {
					t.Fatalf("task %d: worker got %+v, want %+v (in order, intact)", i, got, tasks[i])
				}
			case err := <-errs:
				t.Fatalf("after %d tasks: %v", i, err)
			case <-deadline:
				t.Fatalf("only %d of %d tasks arrived within 30s", i, n)
			}
		}
		e2eWaitBlocked(t, webapp, 0) // the worker stopped after the last task
		e2eNothing(t, "extra task (duplicate)", sent)
		if got, err := e.Direct.LLen(ctx, "email_queue").Result(); err != nil || got != 0 {
			t.Fatalf("backend LLEN email_queue = %d, %v; want 0", got, err)
		}
	})
}

// TestWorker_SeveralWorkersShareQueue: four workers on one queue, a fast producer; every task is sent
// exactly once, and each worker sees its tasks in queue order.
func TestWorker_SeveralWorkersShareQueue(t *testing.T) {
	t.Parallel()
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // registered first, so it runs after the clients and qgate are closed
	e := e2eStart(t)
	ctx := e2eCtx(t)
	const n, workers = 400, 4
	tasks := e2eEmailTasks(n)
	index := map[e2eEmailTask]int{}
	for i, task := range tasks {
		index[task] = i
	}

	wctx, stop := context.WithCancel(ctx)
	defer stop()
	type delivery struct {
		worker int
		task   e2eEmailTask
	}
	all := make(chan delivery, n)
	for w := 0; w < workers; w++ {
		sent := make(chan e2eEmailTask, n)
		errs := make(chan error, 1)
		rdb := e.Client(t, 3)
		wg.Add(2)
		go func() { defer wg.Done(); e2eWorker(wctx, rdb, n, sent, errs) }()
		go func(w int) {
			defer wg.Done()
			for {
				select {
				case task := <-sent:
					all <- delivery{w, task}
				case <-errs:
					return
				case <-wctx.Done():
					return
				}
			}
		}(w)
	}
	webapp := e.Client(t, 3)
	e2eWaitBlocked(t, webapp, workers)
	pipe := webapp.Pipeline() // a busy web app: many requests in flight at once
	for _, task := range tasks {
		body, _ := json.Marshal(task)
		pipe.RPush(ctx, "email_queue", body)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}

	last := make([]int, workers)
	for i := range last {
		last[i] = -1
	}
	seen := map[int]bool{}
	for i := 0; i < n; i++ {
		d := e2eRecv(t, fmt.Sprintf("task %d of %d", i+1, n), all)
		idx, ok := index[d.task]
		if !ok {
			t.Fatalf("worker %d got a task that was never pushed: %+v", d.worker, d.task)
		}
		if seen[idx] {
			t.Fatalf("task %d delivered twice", idx)
		}
		seen[idx] = true
		if idx <= last[d.worker] {
			t.Fatalf("worker %d got task %d after task %d", d.worker, idx, last[d.worker])
		}
		last[d.worker] = idx
	}
	if got, err := e.Direct.LLen(ctx, "email_queue").Result(); err != nil || got != 0 {
		t.Fatalf("backend LLEN email_queue = %d, %v; want 0", got, err)
	}
	stop()
	// The workers are blocked in BLPOP again; closing their clients and qgate at the end of the test
	// releases them (wg.Wait runs last).
}
