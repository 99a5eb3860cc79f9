package proxy

import (
	"container/heap"
	"time"
)

// timerHeap orders a loop's connections by their next deadline, which sets
// the epoll_wait timeout. Raw file descriptors have no deadlines of their
// own, so every handshake, connect and idle limit goes through here.
type timerHeap []*conn

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIndex = i
	h[j].heapIndex = j
}
func (h *timerHeap) Push(x any) {
	c := x.(*conn)
	c.heapIndex = len(*h)
	*h = append(*h, c)
}
func (h *timerHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	c.heapIndex = -1
	return c
}

// schedule sets c's deadline (zero removes it).
func (h *timerHeap) schedule(c *conn, at time.Time) {
	c.deadline = at
	switch {
	case at.IsZero() && c.heapIndex >= 0:
		heap.Remove(h, c.heapIndex)
	case at.IsZero():
	case c.heapIndex >= 0:
		heap.Fix(h, c.heapIndex)
	default:
		heap.Push(h, c)
	}
}

// next returns the earliest deadline.
func (h timerHeap) next() (time.Time, bool) {
	if len(h) == 0 {
		return time.Time{}, false
	}
	return h[0].deadline, true
}

// expired pops the earliest connection whose deadline has passed.
func (h *timerHeap) expired(now time.Time) *conn {
	if len(*h) == 0 || (*h)[0].deadline.After(now) {
		return nil
	}
	c := heap.Pop(h).(*conn)
	c.deadline = time.Time{}
	return c
}
