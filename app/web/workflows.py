"""Placeholder: filled in by the workflows work."""

from flask import Blueprint

bp = Blueprint("workflows", __name__)
