"""Figures of the study, styled from the method registry."""
