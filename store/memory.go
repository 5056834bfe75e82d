package store

// MemoryStats is what the ledger's Pebble database holds in memory. With
// cgo (the default build) the block cache and the memtables are allocated
// outside the Go heap: they count in the process RSS but not in
// runtime.MemStats.
type MemoryStats struct {
	BlockCacheBytes     int64  // bytes in use by the block cache
	BlockCacheCapacity  int64  // the room for blocks (Options.CacheBytes; the memtables' reservation comes on top)
	MemTableBytes       uint64 // bytes allocated by memtables (and large batches)
	MemTables           int64  // memtables allocated
	ZombieMemTableBytes uint64 // memtables no longer in the DB state, still pinned by an iterator
	FileCacheBytes      int64  // approximate bytes of open table readers
	Tables              int64  // sstables in the LSM
	L0Tables            int64  // of which in level 0
}

// Memory reports the ledger's in-memory footprint from Pebble's metrics.
// It takes Pebble's metrics lock briefly; call it for diagnostics, not
// per message.
func (l *Ledger) Memory() (MemoryStats, error) {
	db, err := l.acquire()
	if err != nil {
		return MemoryStats{}, err
	}
	defer l.mu.RUnlock()
	m := db.Metrics()
	s := MemoryStats{
		BlockCacheBytes:     m.BlockCache.Size,
		BlockCacheCapacity:  l.opt.CacheBytes,
		MemTableBytes:       m.MemTable.Size,
		MemTables:           m.MemTable.Count,
		ZombieMemTableBytes: m.MemTable.ZombieSize,
		FileCacheBytes:      m.FileCache.Size,
		L0Tables:            m.Levels[0].TablesCount,
	}
	for _, lv := range m.Levels {
		s.Tables += lv.TablesCount
	}
	return s, nil
}
