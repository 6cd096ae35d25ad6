"""Reference implementations of every graded function, one module per topic, and their validators.

Hidden tests compare students' functions with these (the names below are the graded ones). Helpers shown to
students but not graded (data loading, models, training loops, plots, the data-dependent PATE analysis) live
in `course.shown`. Each function validates its arguments and raises a
`ValueError` that says what was wrong.
"""

from .audit import empirical_epsilon
from .databases import (
    create_db,
    create_db_and_parallels,
    get_parallel_db,
    get_parallel_dbs,
    sensitivity,
    threshold_query,
)
from .differencing import averaging_attack, differencing_attack, differencing_attack_mean, sum_query
from .dpsgd import dp_grads
from .dpsgd_data import label_fraction
from .gaussian import gaussian_mechanism
from .laplace import laplace_mechanism, private_mean, private_sum, total_epsilon
from .membership import attack_auc, attack_roc, dp_advantage_bound, loss_scores, tpr_at_fpr
from .pate import gaussian_noisy_max, laplace_noisy_max, partition_indices, vote_counts
from .pate_analysis import gnmax_epsilon, pate_epsilon_data_independent
from .randomized_response import debias_mean, randomized_response, rr_epsilon

__all__ = [
    "attack_auc",
    "attack_roc",
    "averaging_attack",
    "create_db",
    "create_db_and_parallels",
    "debias_mean",
    "differencing_attack",
    "differencing_attack_mean",
    "dp_advantage_bound",
    "dp_grads",
    "empirical_epsilon",
    "gaussian_mechanism",
    "gaussian_noisy_max",
    "get_parallel_db",
    "get_parallel_dbs",
    "gnmax_epsilon",
    "label_fraction",
    "laplace_mechanism",
    "laplace_noisy_max",
    "loss_scores",
    "partition_indices",
    "pate_epsilon_data_independent",
    "private_mean",
    "private_sum",
    "randomized_response",
    "rr_epsilon",
    "sensitivity",
    "sum_query",
    "threshold_query",
    "total_epsilon",
    "tpr_at_fpr",
    "vote_counts",
]
