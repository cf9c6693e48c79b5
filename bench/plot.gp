# bench/plot.gp: renders one figure of bench/plot.sh from its .dat file.
#
# bench/plot.sh runs it once per figure; by hand (gnuplot-nox, pngcairo):
#   gnuplot -e "figure='scaling-clients'; dat='docs/img/scaling-clients.dat'; png='docs/img/scaling-clients.png'" bench/plot.gp
# figure is scaling-clients, queue-length or names; the columns of each .dat
# are named in its header.

set encoding utf8
set terminal pngcairo size 1400,560 font "sans,11" linewidth 1.5
set output png
set grid
set key top left box opaque Left reverse
set datafile missing "nan"
set style line 1 lc rgb "#1f77b4" pt 7 ps 1.0 lw 2            # netsemd
set style line 2 lc rgb "#7f7f7f" pt 5 ps 1.0 lw 2            # the floor
set style line 3 lc rgb "#1f77b4" pt 9 ps 1.0 lw 2 dt 2       # netsemd, second figure
set style line 4 lc rgb "#7f7f7f" pt 11 ps 1.0 lw 2 dt 2      # the floor, second figure
set style line 5 lc rgb "#d62728" pt 7 ps 1.0 lw 2            # memory

if (figure eq "scaling-clients") {
  set multiplot layout 1,2 title "spread: every client cycles (ACQUIRE + RELEASE) on a name of its own, loopback (median per point)" font "sans,13"
  set logscale x 2
  set xrange [0.8:320]
  set xlabel "clients (connections)"
  set ylabel "cycles per second"
  set format y "%.0s%c"
  set yrange [0:*]
  set title "throughput"
  plot dat using 1:2 with linespoints ls 1 title "netsemd", \
       dat using 1:3 with linespoints ls 2 title "floor (echo server)"
  set ylabel "server CPU per cycle (µs)"
  set format y "%g"
  set title "server CPU time per cycle (utime + stime, 10 ms ticks)"
  set key top right
  plot dat using 1:4 with linespoints ls 1 title "netsemd", \
       dat using 1:5 with linespoints ls 2 title "floor (echo server)"
  unset multiplot
}

if (figure eq "queue-length") {
  set multiplot layout 1,2 title "contended: every client cycles on one name of limit 10, so clients − 10 wait in its FIFO queue (median per point)" font "sans,13"
  set logscale x 2
  set xrange [12:680]
  set xlabel "clients on the one name (waiters = clients − 10)"
  set logscale y 10
  set ylabel "acquire latency, send to grant (ms)"
  set title "acquire latency, queueing included"
  plot dat using 1:($6/1000) with linespoints ls 1 title "netsemd p50", \
       dat using 1:($8/1000) with linespoints ls 3 title "netsemd p99", \
       dat using 1:($7/1000) with linespoints ls 2 title "floor p50 (no queue)", \
       dat using 1:($9/1000) with linespoints ls 4 title "floor p99 (no queue)"
  unset logscale y
  set yrange [0:*]
  set ylabel "cycles per second"
  set format y "%.0s%c"
  set title "throughput"
  set key bottom left
  plot dat using 1:2 with linespoints ls 1 title "netsemd", \
       dat using 1:3 with linespoints ls 2 title "floor (echo server)"
  unset multiplot
}

if (figure eq "names") {
  set multiplot layout 1,2 title "names: netsemd's memory with created semaphores (CREATE, 256 in flight; a fresh netsemd per point)" font "sans,13"
  set xlabel "created semaphores"
  set format x "%.0s%c"
  set xrange [0:*]
  set yrange [0:*]
  set ylabel "netsemd RSS (MiB)"
  set title "resident memory (VmRSS)"
  plot dat using 1:3 with linespoints ls 5 title "after the CREATEs", \
       dat using 1:2 with linespoints ls 2 title "before (server at rest)"
  set logscale x 10
  set xrange [5000:2000000]
  set ylabel "bytes per created semaphore"
  set title "(RSS after − RSS before) / semaphores"
  unset key
  plot dat using 1:4 with linespoints ls 5 notitle
  unset multiplot
}
