"""The constants of the RS solve protocol (THEORY.md §9), defined once for every solver.

The symmetric and general LoRA channels (T28–T33), the general-σ pre-training (T6–T19) and the
Bayes fine-tuning state evolution (T38–T40) all read these names from here (``grep`` shows one
definition of each); they had drifted apart when each solver carried its own copy (stall window
40 / 100 / none, Anderson memory 3 / 3 / 2, the Stein threshold defined twice).
"""

#: Anderson mixing depth of every order-parameter iteration (:func:`theory.fixed_point.damped_fixed_point`)
ANDERSON_MEMORY = 3
#: longest Anderson extrapolation taken, in damped steps β·|g| (longer ones are not taken: a
#: plain damped step instead). It bounds the slowest mode Anderson can accelerate: a map of
#: slope ρ has its fixed point |g|/(1 − ρ) away, i.e. 1/(β(1 − ρ)) damped steps. At 10 the
#: softmax pre-training at λ = 1e-4 (ρ ≈ 0.9 at β = 0.5) crawled at the damped rate 0.95 for 1230
#: iterations (15.9 s); at 30 it converges in 98 to the same point (to 1e-6; benchmarks/README.md,
#: "Issue 13, step 7")
ANDERSON_MAX_STEP = 30
#: stop as "stalled" when the best residual has not halved in this many iterations (a Monte-Carlo
#: map that is discontinuous at the resolution of its draws cycles instead of converging)
STALL_ITERATIONS = 40
#: multi-minimum fraction of the prox at or above which the Stein forms of the hats are used (§9)
STEIN_THRESHOLD = 1e-3
#: multi-minimum fraction above which a point is flagged "RS doubtful"
RS_DOUBT_MULTIMIN = 1e-2
#: iteration cap of the branch search from a second start (a start that has not converged by
#: then drifts towards another fixed point) ...
BRANCH_SEARCH_CAP = 30
#: ... which also stops once its residual rate over this many iterations says it cannot converge
BRANCH_SEARCH_SLOW = 8
#: an MC repeat starts at the solved point: cap min(max_iter, max(100, this × its iterations))
REPEAT_CAP_FACTOR = 4
#: warm-phase / full-map-step rounds before the choice of prox minima is declared "stalled"
PHASE2_ROUNDS = 6
#: per-sample prox Newton: converged when |∇F| ≤ this × (1 + |z|∞) (theory.prox.batched_newton)
PROX_GTOL = 1e-10
#: the LoRA channel's prox runs column-wise, unrolled over the T coordinates, up to this T
#: (theory.finetuning.lora_columns: 2–4× faster per Newton step; its trace, hence its compilation,
#: grows as T³: 0.7 s at T = 3, 1.5 s at T = 4, 6 s at T = 6), the vmapped per-sample form above
COLUMN_FORM_MAX_T = 4
#: finite-difference step (× the channel's scale, q0* for the Bayes SE) of the slope of a
#: fixed-point map at a converged point (the stability hook of a channel, THEORY.md §9)
STABILITY_STEP = 1e-3
#: start (× the channel's scale) of the iteration that leaves an unstable fixed point
UNSTABLE_KICK = 1e-2
#: plain damped steps away from an unstable fixed point before Anderson mixing again
PLAIN_ESCAPE = 30
#: where the general-σ pre-training channel evaluates its Q = M = V = 0 limit (the exact Ŝ = 0
#: fixed point of the factorized map, theory.pretraining.channel.PretrainChannel.zero_row): the
#: hats carry a bias O(ZERO_V) and a rounding error ≈ K·1e-16/ZERO_V of (Tr(I + V∇²ℓ)⁻¹ − K)/V;
#: Ω = √ZERO_Q G1 moves the metrics by O(1e-10)
ZERO_Q = 1e-20
ZERO_V = 1e-7
#: floor of Q and V in the pre-training channel's coordinates (sanitize; the nuclear step's exact
#: Ŝ = 0 is mapped there, so a damped log-coordinate step can approach it)
ITER_FLOOR = 1e-12

#: general LoRA (T33): a pivot of the Cholesky factor of the (w*, u, v) Gram matrix below this is
#: 0 (u ∥ v or u ∥ w*); nothing is divided by it
PIVOT_FLOOR = 1e-10
