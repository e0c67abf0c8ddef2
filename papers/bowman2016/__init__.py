"""Bowman et al. 2016, *Generating Sentences from a Continuous Space* (CoNLL 2016).

Registers the paper's language-modelling table (Table 2, PTB) as variants; see `model.py` for
the method and its implementation details, `presets.py` for the settings and every reduction
from the paper, `reported.py` for the paper's numbers with their verification tags.
"""
from papers.bowman2016.model import PAPER

__all__ = ["PAPER"]
