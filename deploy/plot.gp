# deploy/plot.gp - PNG plots of a rank sweep (deploy/sweep writes the CSV and
# calls this; see docs/sweeps.md).
#
#   gnuplot -e "csv='OUT/sweep.csv'" deploy/plot.gp
#   gnuplot -e "csv='OUT/sweep.csv'; outdir='figs'; plotrank='8'; loss='train_loss'" deploy/plot.gp
#
# Variables (set with -e before the script):
#   csv       the sweep CSV (required): rank,workers,adapter_params,
#             bytes_per_step,tokens_per_s,train_loss,val_loss[,seed,mode]
#             (an experiment's CSV has seed and mode lora|full: one line per
#             worker count and seed, the full fine-tuning run as a dashed
#             horizontal line, throughput for the first seed only)
#   outdir    where the PNGs go (default: the CSV's directory)
#   plotrank  draw tokens/s vs workers for this rank only (default: every rank)
#   loss      val_loss (default) or train_loss: the loss drawn against rank
#   title     a subtitle for every plot, e.g. the model and step count
#
# Writes OUTDIR/loss_vs_rank.png, OUTDIR/bytes_vs_rank.png and
# OUTDIR/tokens_per_s_vs_workers.png.  Rows are picked and sorted with awk and
# sort (gnuplot would break a line at every row of another group).

if (!exists("csv")) { print "plot.gp: set csv, e.g. gnuplot -e \"csv='OUT/sweep.csv'\" plot.gp"; exit status 2 }
if (!exists("outdir")) { outdir = (strstrt(csv, "/") ? system(sprintf("dirname '%s'", csv)) : ".") }
if (!exists("plotrank")) { plotrank = "" }
if (!exists("loss")) { loss = "val_loss" }
if (!exists("title")) { title = "" }
losscol = (loss eq "train_loss") ? 6 : 7
losslabel = (loss eq "train_loss") ? "final training loss" : "final validation loss"

# The distinct values of a column, ascending, as a gnuplot word list.
distinct(col) = system(sprintf("awk -F, 'NR > 1 && $%d != \"\" { print $%d }' '%s' | sort -un | tr '\\n' ' '", col, col, csv))
ncols = int(system(sprintf("head -n 1 '%s' | awk -F, '{ print NF }'", csv)))
# The seeds of an experiment's CSV; "-" (no filter) for a plain sweep's.
seeds = (ncols >= 9) ? distinct(8) : "-"
seed1 = word(seeds, 1)
# LoRA rows (rank set) of seed s ("-": any): an awk condition.
lora(s) = sprintf("$1 != \"\" && (\"%s\" == \"-\" || $8 == \"%s\")", s, s)
# The LoRA rows of seed seed1 whose column col equals val, sorted by column by:
# a "< command" file name.
rows(col, val, by) = sprintf("< awk -F, 'NR > 1 && %s && $%d == %s' '%s' | sort -t, -k%d,%dn", lora(seed1), col, val, csv, by, by)
# The LoRA rows of w workers and seed s, sorted by rank.
wsrows(w, s) = sprintf("< awk -F, 'NR > 1 && %s && $2 == %s' '%s' | sort -t, -k1,1n", lora(s), w, csv)
wstitle(w, s) = sprintf("%s worker%s%s", w, w eq "1" ? "" : "s", s eq "-" ? "" : ", seed " . s)
# Column col of the full fine-tuning row ("" when there is none).
fullcol(col) = system(sprintf("awk -F, 'NR > 1 && $9 == \"full\" { print $%d; exit }' '%s'", col, csv))
# ", VALUE with lines ... title '...'" for the plot command, or "".
fullline(col, what) = (fullcol(col) eq "" ? "" : \
  sprintf(", %s with lines dt 2 lw 2 lc rgb 'black' title 'full fine-tuning (%s worker%s), %s'", \
          fullcol(col), fullcol(2), fullcol(2) eq "1" ? "" : "s", what))

ranks = distinct(1)
workers = distinct(2)
if (words(ranks) == 0) { print sprintf("plot.gp: %s has no data rows", csv); exit status 1 }
if (plotrank ne "") { ranks = plotrank }

if (strstrt(GPVAL_TERMINALS, "pngcairo") > 0) {
  set terminal pngcairo size 800,560 enhanced font "sans,11"
} else {
  set terminal png size 800,560
}
set datafile separator ","
set grid
set key top right box opaque
set pointsize 1.2
sub = (title eq "" ? "" : "\n{/*0.8 " . title . "}")

# 1. Loss against LoRA rank, one line per worker count.
set output outdir . "/loss_vs_rank.png"
set title "LoRA rank sweep: " . losslabel . sub
set logscale x 2
set xlabel "LoRA rank r"
set ylabel losslabel
set format x "%g"
set offsets graph 0.05, graph 0.05, graph 0.05, graph 0.05
fullplot = fullline(losscol, sprintf("%s", fullcol(losscol)))
plot for [w in workers] for [s in seeds] wsrows(w, s) using 1:losscol with linespoints lw 2 \
     title wstitle(w, s) @fullplot

# 2. Bytes moved per step (gradients pushed + adapters pulled) against rank:
#    proportional to r, so a line of slope 1 on log-log axes.
set output outdir . "/bytes_vs_rank.png"
set title "Network traffic per step vs LoRA rank" . sub
set logscale y 10
set offsets graph 0.05, graph 0.05, 0, 0
set ylabel "bytes per step (push + pull, all ranks)"
set format y "%.0s %cB"
set key bottom right box opaque
fullplot = fullline(4, sprintf("%s bytes", fullcol(4)))
plot for [w in workers] for [s in seeds] wsrows(w, s) using 1:4 with linespoints lw 2 \
     title wstitle(w, s) @fullplot

# 3. Throughput against worker count, one line per rank.
set output outdir . "/tokens_per_s_vs_workers.png"
set title "Training throughput vs workers" . sub
unset logscale
set format y "%g"
set format x "%g"
set xlabel "workers"
set ylabel "tokens/s (all workers)"
set xtics 1
set offsets 0.3, 0.3, graph 0.1, 0
set yrange [0:*]
set key top left box opaque
plot for [r in ranks] rows(1, r, 2) using 2:5 with linespoints lw 2 title sprintf("r = %s", r)

set output
