//go:build linux

package bench

import (
	"syscall"
	"testing"
)

// BenchmarkPageFault measures what the machine charges for touching a
// page for the first time (a minor fault: a trap and a zeroed page) and
// for touching it again, per 4 KiB page. The bench's warm-up exists
// because of the first figure: on a virtual machine it can be tens of
// times what it is on bare metal.
//
//	go test -run '^$' -bench PageFault ./internal/bench
func BenchmarkPageFault(b *testing.B) {
	const size = 64 << 20
	const page = 4096
	mmap := func(b *testing.B) []byte {
		mem, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
		if err != nil {
			b.Fatal(err)
		}
		return mem
	}
	touch := func(b *testing.B, fresh bool) {
		mem := mmap(b)
		defer func() { _ = syscall.Munmap(mem) }()
		if !fresh {
			for i := 0; i < size; i += page {
				mem[i] = 1
			}
		}
		b.ResetTimer()
		off := 0
		for b.Loop() {
			if off == size {
				if fresh {
					// A new mapping: its pages fault on first touch.
					b.StopTimer()
					_ = syscall.Munmap(mem)
					mem = mmap(b)
					b.StartTimer()
				}
				off = 0
			}
			mem[off] = 1 // a write: a read would map the zero page and fault twice
			off += page
		}
	}
	b.Run("first-touch", func(b *testing.B) { touch(b, true) })
	b.Run("resident", func(b *testing.B) { touch(b, false) })
}
