"""Every docstring example in recsys.embeddings runs."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import recsys.embeddings

MODULES = sorted(m.name for m in pkgutil.iter_modules(recsys.embeddings.__path__, "recsys.embeddings."))


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_every_public_class_has_an_example():
    for name in recsys.embeddings.__all__:
        obj = getattr(recsys.embeddings, name)
        if isinstance(obj, type):
            assert obj.__doc__ and ">>>" in obj.__doc__, name
