"""Realistic wrong answers to notebooks 01 and 02: each hidden check must catch its mistake."""

import torch


def create_db_ignoring_p(num_entries, p=0.5):
    return torch.rand(num_entries) < 0.5


def create_db_float(num_entries, p=0.5):
    return (torch.rand(num_entries) < p).float()


def get_parallel_db_off_by_one(db, remove_index):
    return torch.cat((db[:remove_index], db[remove_index + 2 :]))


def get_parallel_db_removes_next(db, remove_index):
    return torch.cat((db[: remove_index + 1], db[remove_index + 2 :])) if remove_index + 1 < len(db) else db[:-1]


def get_parallel_dbs_skips_first(db):
    return [torch.cat((db[:i], db[i + 1 :])) for i in range(1, len(db))]


def create_db_and_parallels_mismatched(num_entries, p=0.5):
    db = torch.rand(num_entries) < p
    other = torch.rand(num_entries) < p
    return db, [torch.cat((other[:i], other[i + 1 :])) for i in range(num_entries)]


def sensitivity_averaging(query, num_entries=1000):
    db = torch.rand(num_entries) < 0.5
    full = float(query(db))
    changes = [abs(float(query(torch.cat((db[:i], db[i + 1 :])))) - full) for i in range(num_entries)]
    return sum(changes) / len(changes)


def sensitivity_ignores_num_entries(query, num_entries=1000):
    db = torch.rand(100) < 0.5
    full = float(query(db))
    return max(abs(float(query(torch.cat((db[:i], db[i + 1 :])))) - full) for i in range(100))


def threshold_query_greater_or_equal(db, threshold=5):
    return (db.sum() >= threshold).float()


def threshold_query_returns_bool(db, threshold=5):
    return db.sum() > threshold


def sum_query_counts_rows(db):
    return torch.tensor(len(db))


def differencing_attack_fixed_sum(db, index, query=None):
    return float(db.sum() - torch.cat((db[:index], db[index + 1 :])).sum())


def differencing_attack_wrong_sign(db, index, query=lambda d: d.sum()):
    return float(query(torch.cat((db[:index], db[index + 1 :]))) - query(db))


def differencing_attack_mean_without_sizes(db, index):
    return float(db.float().mean() - torch.cat((db[:index], db[index + 1 :])).float().mean())


def averaging_attack_queries_once(noisy_query, db, index, num_queries):
    return float(noisy_query(db) - noisy_query(torch.cat((db[:index], db[index + 1 :]))))


def averaging_attack_sums(noisy_query, db, index, num_queries):
    parallel = torch.cat((db[:index], db[index + 1 :]))
    return sum(float(noisy_query(db) - noisy_query(parallel)) for _ in range(num_queries))
