"""Small estimators the tests build models from (imported as ``from tests._estimators import
Contrarian``; fixtures are never imported from a conftest)."""

from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression


class Contrarian(ClassifierMixin, BaseEstimator):
    """A logistic regression that reports the other class's probability: its scores, in and out
    of fold, rank the patients against the label."""

    def fit(self, X, y):
        self.model_ = LogisticRegression().fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        return self.model_.predict_proba(X)[:, ::-1]

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
