// Package reportgen renders a server suite's results as docs/benchmark.md
// and its PNG plots.
package reportgen

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/cloudwego/netpoll/benchmark/internal/results"
)

// implColors gives every implementation the same color in every plot.
var implColors = map[string]color.Color{
	"gonet": color.RGBA{0x4c, 0x72, 0xb0, 0xff},
	"ref":   color.RGBA{0xdd, 0x84, 0x52, 0xff},
	"ours":  color.RGBA{0x55, 0xa8, 0x68, 0xff},
	"floor": color.RGBA{0x8c, 0x8c, 0x8c, 0xff},
}

// Plot files, relative to the image directory.
const (
	LoadPlot   = "load.png"
	IdlePlot   = "idle.png"
	SharedPlot = "shared.png"
	OpenPlot   = "open.png"
	HertzPlot  = "hertz.png"
)

// plotFile is a plot and the Markdown text for it.
type plotFile struct{ name, alt string }

// plotOrder lists the plots in the order the report shows them.
var plotOrder = []plotFile{
	{LoadPlot, "load and client scenarios"},
	{SharedPlot, "shared CPUs: unpinned and CPU-heavy scenarios"},
	{OpenPlot, "echo, open loop"},
	{HertzPlot, "Hertz"},
	{IdlePlot, "idle connections"},
}

// plotOf returns the plot a scenario's row goes to.
func plotOf(sc *results.Scenario) string {
	switch {
	case sc.Kind == results.KindIdle:
		return IdlePlot
	case strings.HasPrefix(sc.Name, "hertz"):
		return HertzPlot
	case strings.HasPrefix(sc.Name, "echo-open"):
		return OpenPlot
	case strings.HasSuffix(sc.Name, "/unpinned") || sc.Name == "cpu-heavy":
		return SharedPlot
	}
	return LoadPlot
}

// plotFiles returns the plots the suite has scenarios for, in order.
func plotFiles(s *results.Suite) []plotFile {
	has := map[string]bool{}
	for _, sc := range s.Scenarios {
		has[plotOf(sc)] = true
	}
	var out []plotFile
	for _, f := range plotOrder {
		if has[f.name] {
			out = append(out, f)
		}
	}
	return out
}

// plotMetrics are the columns of the load plot, by scenario kind.
func plotMetrics(kind string) []results.Metric {
	all := results.Metrics(kind)
	pick := func(names ...string) []results.Metric {
		var out []results.Metric
		for _, n := range names {
			for _, m := range all {
				if m.Name == n {
					out = append(out, m)
				}
			}
		}
		return out
	}
	switch kind {
	case results.KindClient:
		return pick("QPS", "p99 µs", "client CPU µs/req", "client peak RSS MiB")
	case results.KindIdle:
		return pick("RSS/conn KiB", "goroutines", "accept CPU µs/conn", "peak RSS MiB")
	default:
		return pick("QPS", "p99 µs", "server CPU µs/req", "peak RSS MiB")
	}
}

// WritePlots draws the plots (a row per scenario: for load and client
// scenarios QPS, p99, CPU per request and peak RSS) into dir, returning the
// files written: load.png (the pinned closed-loop scenarios), shared.png,
// open.png, hertz.png and idle.png.
func WritePlots(s *results.Suite, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	rows := map[string][][]*plot.Plot{}
	for _, sc := range s.Scenarios {
		var row []*plot.Plot
		for _, m := range plotMetrics(sc.Kind) {
			p, err := barPlot(sc, m)
			if err != nil {
				return nil, err
			}
			row = append(row, p)
		}
		rows[plotOf(sc)] = append(rows[plotOf(sc)], row)
	}
	var files []string
	for _, f := range plotOrder {
		if len(rows[f.name]) == 0 {
			continue
		}
		path := filepath.Join(dir, f.name)
		if err := saveGrid(rows[f.name], path); err != nil {
			return nil, err
		}
		files = append(files, path)
	}
	return files, nil
}

// errPoints are the whiskers of a bar: the lowest and highest round.
type errPoints struct {
	plotter.XYs
	plotter.YErrors
}

// barPlot draws one bar per implementation: the median over rounds, with
// whiskers from the lowest to the highest round.
func barPlot(sc *results.Scenario, m results.Metric) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = sc.Name + ": " + m.Name
	p.Title.TextStyle.Font.Size = vg.Points(10)
	p.X.Tick.Label.Font.Size = vg.Points(9)
	p.Y.Tick.Label.Font.Size = vg.Points(8)
	p.Y.Min = 0
	var names []string
	var whiskers errPoints
	for i, impl := range sc.Impls {
		med := sc.Median(impl, m)
		lo, hi := med, med
		for _, r := range sc.Runs[impl] {
			if r.Err != "" {
				continue
			}
			v := m.Get(r)
			lo, hi = min(lo, v), max(hi, v)
		}
		if med != med { // NaN: no valid run
			med, lo, hi = 0, 0, 0
		}
		bars, err := plotter.NewBarChart(plotter.Values{med}, vg.Points(22))
		if err != nil {
			return nil, err
		}
		bars.XMin = float64(i)
		bars.Color = implColors[impl]
		bars.LineStyle.Width = 0
		p.Add(bars)
		names = append(names, impl)
		whiskers.XYs = append(whiskers.XYs, plotter.XY{X: float64(i), Y: med})
		whiskers.YErrors = append(whiskers.YErrors, struct{ Low, High float64 }{med - lo, hi - med})
	}
	if eb, err := plotter.NewYErrorBars(whiskers); err == nil {
		eb.LineStyle.Width = vg.Points(0.8)
		p.Add(eb)
	}
	p.NominalX(names...)
	grid := plotter.NewGrid()
	grid.Vertical.Color = nil
	p.Add(grid)
	return p, nil
}

// saveGrid draws plots as a grid of tiles into a PNG file.
func saveGrid(plots [][]*plot.Plot, path string) error {
	rows, cols := len(plots), 0
	for _, r := range plots {
		cols = max(cols, len(r))
	}
	for i := range plots {
		for len(plots[i]) < cols {
			plots[i] = append(plots[i], nil)
		}
	}
	const tileW, tileH = 3.3 * vg.Inch, 2.3 * vg.Inch
	img := vgimg.NewWith(vgimg.UseWH(tileW*vg.Length(cols), tileH*vg.Length(rows)), vgimg.UseDPI(110))
	dc := draw.New(img)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	t := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(plots, t, dc)
	for i := range plots {
		for j, p := range plots[i] {
			if p != nil {
				p.Draw(canvases[i][j])
			}
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}
