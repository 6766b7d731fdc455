"""The names of every metric a trial reports, defined once.

Trials, the results actor, the law fit, exports and the CLI all read these constants; nobody
retypes a metric name as a string literal. Positions are 0-based indices into a sequence's target
tokens; a position equal to the sequence's target length means "no such position" (recall held to
the end), so every metric stays a finite number.
"""

from __future__ import annotations

# -- loss (natural log, nats per target token) ---------------------------------------------------
LOSS_INIT = "loss_init"  # mean target-token cross-entropy before training (adapter output is zero)
LOSS_FINAL = "loss_final"  # the same after training
DELTA_LOSS = "delta_loss"  # loss_init - loss_final: the law's ΔL
DELTA_LOSS_HALF = "delta_loss_half"  # ΔL at the last evaluation at or before half the budget (trainables/convergence.py)
DELTA_LOSS_HALF_STEP = "delta_loss_half_step"  # the step of that evaluation
CONVERGENCE_RATIO = "convergence_ratio"  # ΔL / delta_loss_half: > 1.05 means ΔL was still rising

# -- the p > 0.5 certificate, teacher forced -----------------------------------------------------
FRAC_P_GT_HALF = "frac_p_gt_half"  # fraction of target tokens with p_t > 0.5
FIRST_SUBTHRESHOLD_POS = "first_subthreshold_pos"  # first t with p_t <= 0.5 (mean over sequences)
TF_TOKEN_ACC = "tf_token_acc"  # fraction of target tokens whose teacher-forced argmax is right
FIRST_TF_ERROR_POS = "first_tf_error_pos"  # first teacher-forced argmax error (mean over sequences)
FRAC_SEQUENCES_CERTIFIED = "frac_sequences_certified"  # sequences with p_t > 0.5 at every t

# -- greedy decoding -----------------------------------------------------------------------------
GREEDY_TOKEN_ACC = "greedy_token_acc"  # position-wise match of the free-running greedy output
GREEDY_EXACT_MATCH = "greedy_exact_match"  # fraction of sequences reproduced exactly
FIRST_GREEDY_ERROR_POS = "first_greedy_error_pos"  # first greedy mismatch (mean over sequences)

# -- budget and capacity -------------------------------------------------------------------------
STEPS_TO_CERTIFIED = "steps_to_certified"  # first evaluated step with every sequence certified; None if never
TRAINABLE_PARAMS = "trainable_params"  # adapter parameters, counted on the model (N_eff)
RANK = "rank"  # LoRA rank r
TARGET_TOKENS = "target_tokens"  # ℓ: target tokens over all sequences
BITS_PER_PARAM = "bits_per_param"  # ℓ · ΔL / ln 2 / N_eff: the paper's ΔL-based figure (overstates; see below)
STEP = "steps"  # optimizer steps taken so far
WALL_S = "wall_s"  # training wall time in seconds, summed over resumes
GREEDY_EVALUATED = "greedy_evaluated"  # whether the greedy keys of this evaluation are fresh
FINISHED = "finished"  # this evaluation is the trial's last: budget spent, or certified with early_stop_certified

# -- certification that lasts (trainables/certification.py) ---------------------------------------
STABLE_CERTIFIED_FROM = "stable_certified_from"  # first evaluated step after which every evaluation stayed
#   fully certified; budget steps + 1 when the latest evaluation is not (a finite, censored value)
CERTIFICATION_LOSSES = "certification_losses"  # times a fully certified evaluation was followed by one that is not

# -- per-sequence detail in the final result -----------------------------------------------------
PER_SEQUENCE = "per_sequence"
SEQ_CERTIFIED = "certified"
SEQ_GREEDY_EXACT = "greedy_exact"
SEQ_FIRST_SUBTHRESHOLD = "first_subthreshold_pos"
SEQ_FIRST_GREEDY_ERROR = "first_greedy_error_pos"
SEQ_TARGET_TOKENS = "target_tokens"

# -- information measures (trainables/information.py, docs/science.md §6) ------------------------
CANDIDATE_TOKENS = "candidate_tokens"  # |V_cand|: tokens random targets are drawn from (specials excluded)
LOSS_CHANCE = "loss_chance"  # ln |V_cand|: the uniform code length, nats per token
LOSS_REF = "loss_ref"  # mean_t min(L_init,t, ln |V_cand|): the reference code length, nats per token
DROP_BELOW_CHANCE = "drop_below_chance"  # loss_ref - loss_final: the law's alternative response (nats/token)
BITS_ABOVE_CHANCE = "bits_above_chance"  # Σ_s max(0, H_s - Σ_t∈s L_final,t) / ln 2 (bits), per sequence s:
#   H_s = ℓ_s · ln |V_cand| for random targets (exact), the base model's code for text (a proxy)
BITS_ABOVE_CHANCE_PER_PARAM = "bits_above_chance_per_param"  # bits_above_chance / N_eff
CERTIFIED_BITS = "certified_bits"  # (tokens with p > 0.5) · log2 |V_cand| (bits)
CERTIFIED_BITS_PER_PARAM = "certified_bits_per_param"  # certified_bits / N_eff
INFORMATION_KEYS = (CANDIDATE_TOKENS, LOSS_CHANCE, LOSS_REF, DROP_BELOW_CHANCE, BITS_ABOVE_CHANCE,
                    BITS_ABOVE_CHANCE_PER_PARAM, CERTIFIED_BITS, CERTIFIED_BITS_PER_PARAM)

#: Keys every evaluation carries, in report order.
EVAL_KEYS = (
    STEP, LOSS_INIT, LOSS_FINAL, DELTA_LOSS, FRAC_P_GT_HALF, FIRST_SUBTHRESHOLD_POS, TF_TOKEN_ACC,
    FIRST_TF_ERROR_POS, FRAC_SEQUENCES_CERTIFIED, GREEDY_TOKEN_ACC, GREEDY_EXACT_MATCH,
    FIRST_GREEDY_ERROR_POS, GREEDY_EVALUATED, STEPS_TO_CERTIFIED, STABLE_CERTIFIED_FROM, CERTIFICATION_LOSSES,
    TRAINABLE_PARAMS, RANK, TARGET_TOKENS, *INFORMATION_KEYS, BITS_PER_PARAM, DELTA_LOSS_HALF,
    DELTA_LOSS_HALF_STEP, CONVERGENCE_RATIO, WALL_S, FINISHED,
)
