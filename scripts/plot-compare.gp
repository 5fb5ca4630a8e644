# Draws the allocator comparison written by bench/compare --png FILE.
#   gnuplot -e "datafile='X.dat'; outfile='X.png'; ncols=6" scripts/plot-compare.gp
# datafile has three blocks (gnuplot indexes 0-2), each a header line
# "group ALLOC1 ALLOC2 ..." then one line per scenario/threads:
#   0: ns/op median divided by the best median of that scenario/threads
#      (groups labelled "(cpu)": cpu ns/op, their wall time is mostly idle)
#   1: RSS after the free phase, MiB
#   2: RSS integral (MiB x s over the workload) divided by the lowest
# '?' marks a missing value (allocator skipped or failed).

if (!exists("datafile")) datafile = 'bench/out/compare.dat'
if (!exists("outfile")) outfile = 'bench/out/compare.png'
if (!exists("ncols")) ncols = 6

set terminal pngcairo size 1400,1300 font "sans,10"
# names such as hakmem:HAKMEM_PURGE_DELAY_MS=10 are literal, not subscripts
set termoption noenhanced
set output outfile
set datafile missing "?"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key outside right top vertical
set xtics nomirror
set multiplot layout 3,1 title "hakmem vs. glibc, mimalloc, jemalloc, tcmalloc (scenario/threads)"

# Ratios span 1x to ~250x (glibc on vm). Bars are cut at ymax so that the
# differences that matter (1.0x-1.5x) stay visible; a cut bar carries its value.
ymax = 3.0
clip(v) = v > ymax ? ymax : v
# x of column i's bar in cluster row: gnuplot spreads ncols bars over 1 unit
# with a gap of one bar width ("gap 1"); "every ::1" skips the header line so
# that $0 counts the clusters from 0.
barx(row, i) = row + (i - 2 - (ncols - 1) / 2.0) / (ncols + 1.0)
set title "time per malloc+free pair, ratio to the best allocator (lower is better, 1 = best)"
set yrange [0:ymax * 1.08]
set ytics 0.5
set ylabel "ns/op ÷ best"
plot for [i=2:ncols+1] datafile index 0 using (clip(column(i))):xtic(1) title columnheader(i), \
     for [i=2:ncols+1] datafile index 0 every ::1 using (barx($0, i)):(ymax):(column(i) > ymax ? sprintf(column(i) < 10 ? "%.1fx" : "%.0fx", column(i)) : "") \
         with labels offset 0,0.6 font ",8" notitle

set title "RSS after everything was freed and 100 ms of idle (lower is better)"
set ytics auto
set yrange [0:*]
set ylabel "MiB"
plot for [i=2:ncols+1] datafile index 1 using i:xtic(1) title columnheader(i)

set title "RSS integrated over the workload (memory x time), ratio to the lowest (lower is better)"
set yrange [0:ymax * 1.08]
set ytics 0.5
set ylabel "MiB*s ÷ lowest"
plot for [i=2:ncols+1] datafile index 2 using (clip(column(i))):xtic(1) title columnheader(i), \
     for [i=2:ncols+1] datafile index 2 every ::1 using (barx($0, i)):(ymax):(column(i) > ymax ? sprintf(column(i) < 10 ? "%.1fx" : "%.0fx", column(i)) : "") \
         with labels offset 0,0.6 font ",8" notitle

unset multiplot
