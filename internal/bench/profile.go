package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"runtime/trace"
	"strings"
)

// profiles are the CPU profile and execution trace of one gateway
// scenario's measured phase. Both cover the whole process.
type profiles struct {
	cpuPath, tracePath, memPath string
	cpu, trace                  *os.File
}

// startProfiles starts what Config asks for; it returns nil when nothing.
func (r *runner) startProfiles(name string) (*profiles, error) {
	if r.cfg.CPUProfile == "" && r.cfg.Trace == "" && r.cfg.MemProfile == "" {
		return nil, nil
	}
	p := &profiles{}
	if r.cfg.MemProfile != "" {
		p.memPath = r.profilePath(r.cfg.MemProfile, name)
	}
	if r.cfg.CPUProfile != "" {
		p.cpuPath = r.profilePath(r.cfg.CPUProfile, name)
		f, err := os.Create(p.cpuPath)
		if err != nil {
			return nil, fmt.Errorf("bench: cpu profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("bench: cpu profile: %w", err)
		}
		p.cpu = f
	}
	if r.cfg.Trace != "" {
		p.tracePath = r.profilePath(r.cfg.Trace, name)
		f, err := os.Create(p.tracePath)
		if err == nil {
			if err = trace.Start(f); err != nil {
				f.Close()
			}
		}
		if err != nil {
			_ = p.stop()
			return nil, fmt.Errorf("bench: trace: %w", err)
		}
		p.trace = f
	}
	return p, nil
}

func (p *profiles) stop() error {
	var err error
	if p.cpu != nil {
		pprof.StopCPUProfile()
		if cerr := p.cpu.Close(); cerr != nil {
			err = fmt.Errorf("bench: cpu profile: %w", cerr)
		}
	}
	if p.trace != nil {
		trace.Stop()
		if cerr := p.trace.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("bench: trace: %w", cerr)
		}
	}
	if p.memPath != "" {
		if merr := writeAllocs(p.memPath); merr != nil && err == nil {
			err = merr
		}
	}
	return err
}

// writeAllocs writes the allocation profile. It is cumulative since the
// process started (corpus signing and earlier scenarios included): run
// one gateway scenario, or diff two files with go tool pprof -base.
func writeAllocs(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: mem profile: %w", err)
	}
	err = pprof.Lookup("allocs").WriteTo(f, 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("bench: mem profile: %w", err)
	}
	return nil
}

// profilePath inserts the scenario name before the extension when the
// run has several gateway scenarios (cpu.prof → cpu.gateway-plain.prof).
func (r *runner) profilePath(path, name string) string {
	n := len(r.cfg.Mixes)
	if r.cfg.Paced > 0 {
		n *= 2
	}
	if r.cfg.MCPCalls > 0 {
		n++ // the MCP comparison's
	}
	if n <= 1 {
		return path
	}
	slug := strings.NewReplacer("/", "-", "@", "-at-").Replace(strings.TrimSuffix(name, "/s"))
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + "." + slug + ext
}
