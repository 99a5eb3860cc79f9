package proxy

import "testing"

func TestBudgetDerivesEverySizeFromHighWater(t *testing.T) {
	for _, hw := range []int{16 << 10, 64 << 10, 256 << 10} {
		b := newBudget(hw)
		if b.batch() > hw {
			t.Errorf("high water %d: batch %d exceeds it", hw, b.batch())
		}
		p := pipe{limit: b.batch()}
		if p.Room() < b.batch() {
			t.Errorf("high water %d: a batch (%d) does not fit the pipe (%d)", hw, b.batch(), p.Room())
		}
		// A full batch of encrypt room, with 16-byte tags and 5-byte
		// headers per 16 KiB record, stays under the high water.
		room := b.encryptRoom(0)
		records := (room + 16<<10 - 1) / (16 << 10)
		if room+records*(16+5+1) > hw {
			t.Errorf("high water %d: encrypting %d bytes may owe %d, over the high water", hw, room, room+records*22)
		}
		if !b.mayDecrypt(2*hw-1) || b.mayDecrypt(2*hw) {
			t.Errorf("high water %d: decryption must stop at twice the high water owed", hw)
		}
		if b.encryptRoom(hw) != 0 || b.encryptRoom(hw+1) != 0 {
			t.Errorf("high water %d: room to encrypt while the high water is owed", hw)
		}
	}
}
