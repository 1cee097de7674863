# bench/scaling.gp - the predicted tokens/s of docs/scaling.md against
# workers, one line per bandwidth, from bench/scaling_fit.py --pred.
#
#   gnuplot -e "pred='OUT/pred.dat'; png='docs/img/scaling_pred.png'" bench/scaling.gp
#
# pred columns: model payload gbit W tok_s_ideal tok_s_S1 S_built
# tok_s_built S_conc tok_s_conc (one row per model, payload, bandwidth, W).
# Three panels: GPT-2 124M r16, GPT-2 124M full fine-tuning, Llama 7B r16.
# Solid: the fewest servers within 10% of the best (as built); dashed: one
# server; grey: W times one worker alone (no exchange).

if (!exists("pred") || !exists("png")) { print "scaling.gp: set pred and png, e.g. gnuplot -e \"pred='pred.dat'; png='out.png'\" scaling.gp"; exit status 2 }
if (strstrt(GPVAL_TERMINALS, "pngcairo") > 0) {
  set terminal pngcairo size 1500,520 font "sans,10"
} else {
  set terminal png size 1500,520
}
set output png
set multiplot layout 1,3
set logscale xy 2
set xrange [7:300]
set xtics (8, 16, 32, 64, 128, 256)
set format y "%.0s%c"
set xlabel "workers W (one 2-vCPU worker each, 1024 tokens a step)"
set ylabel "predicted tokens/s"
set key top left font ",9"
set grid
rows(m, p, g) = sprintf("< awk '$1 == \"%s\" && $2 == \"%s\" && $3 == %d' '%s'", m, p, g, pred)
colour(i) = word("#1b9e77 #d95f02 #7570b3", i)
titles = "'GPT-2 124M, LoRA r = 16 on all linear maps' 'GPT-2 124M, full fine-tuning (all block matrices)' 'Llama 7B, LoRA r = 16 on all linear maps'"
do for [k = 1:3] {
  case = word("GPT-2_124M:r16 GPT-2_124M:full Llama_7B:r16", k)
  m = case[1:strstrt(case, ":") - 1]
  p = case[strstrt(case, ":") + 1:]
  t = word(titles, k)
  set title t noenhanced
  plot rows(m, p, 10) using 4:5 with lines lw 2 lc rgb "#aaaaaa" title "no exchange (W x one worker)", \
       for [i = 1:3] rows(m, p, word("10 25 100", i) + 0) using 4:8 with linespoints lw 2 pt 7 lc rgb colour(i) \
         title word("10 25 100", i) . " Gbit/s, servers S as labelled", \
       for [i = 1:3] rows(m, p, word("10 25 100", i) + 0) using 4:8:(sprintf("%d", $7)) with labels offset 0,0.8 font ",8" tc rgb colour(i) notitle, \
       for [i = 1:3] rows(m, p, word("10 25 100", i) + 0) using 4:6 with lines lw 1 dt 2 lc rgb colour(i) \
         title word("10 25 100", i) . " Gbit/s, S = 1"
}
unset multiplot
