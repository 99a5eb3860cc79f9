package proxy

// budget is the relay's backpressure arithmetic, all of it derived from
// one configured value: the engine's high-water mark (Config.HighWater),
// the most ciphertext a connection may owe its TLS peer before moat stops
// encrypting. It only counts, the way a flow-control window does; the
// relay steps ask it whether they may move data and how much. Sizes:
//
//	batch ≤ pipe limit = batch ≤ engine high water
//
// so a batch read from one side always fits the other side's park, and a
// batch encrypted at once fits under the engine's bound.
type budget struct {
	highWater int
}

func newBudget(highWater int) budget { return budget{highWater: highWater} }

// batch is the most plaintext one relay step moves: the size of the loop's
// scratch buffer and of each pipe's park.
func (b budget) batch() int { return b.highWater }

// mayDecrypt reports whether the relay may take more plaintext out of the
// engine while it owes pending bytes of ciphertext. Reads produce output
// too (KeyUpdate answers, alerts): a peer that sends and never reads must
// not grow it without bound, so decryption stops at twice the high water.
func (b budget) mayDecrypt(pending int) bool { return pending < 2*b.highWater }

// encryptRoom is how much plaintext may be read for the engine to encrypt
// at once while it owes pending bytes: what keeps the whole batch, with
// its record headers and tags (at most 1/16 of it plus one record's
// worth), under the high water. 0 means wait for the TLS peer to read.
func (b budget) encryptRoom(pending int) int {
	room := b.highWater - pending
	room -= room/16 + 512
	return max(room, 0)
}
