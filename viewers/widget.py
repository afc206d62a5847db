"""The review dock widget: classes (colour, count, show/hide), a measurement filter,
reclassify, review status with the reviewer's name, save.

Thin Qt over :class:`viewers.session.Desk`; all logic lives there.
"""

from __future__ import annotations

from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton,
    QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from viewers.layers import store_class_colors
from viewers.session import Desk, desk_for
from viewers.store import REVIEW_STATES

#: Classes offered for reclassification besides those present.
EXTRA_CLASSES = ("Nucleus", "Lymphocyte", "Epithelial", "Stromal", "Tumor", "Mitosis", "Imposter",
                 "Mitosis candidate (unvalidated)", "Epidermis", "Dermis", "Inflammation", "Ink edge", "Other")


class ReviewWidget(QWidget):
    """Dock widget; ``napari_viewer`` is injected by napari (npe2 widget contribution)."""

    def __init__(self, napari_viewer, desk: Desk | None = None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.desk = desk or desk_for(napari_viewer) or Desk.adopt(napari_viewer)
        lay = QVBoxLayout(self)
        form = QFormLayout()
        self.source = QComboBox()
        self.source.addItems(list(self.desk.sources))
        self.source.currentTextChanged.connect(self.refresh)
        form.addRow("Objects", self.source)
        self.reviewer = QLineEdit(self.desk.reviewer)
        self.reviewer.editingFinished.connect(lambda: setattr(self.desk, "reviewer", self.reviewer.text() or "unknown"))
        form.addRow("Reviewer", self.reviewer)
        lay.addLayout(form)

        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["show", "class", "count"])
        self.table.verticalHeader().setVisible(False)
        self.table.itemChanged.connect(self._class_toggled)
        lay.addWidget(self.table)

        filt = QHBoxLayout()
        self.measure = QComboBox()
        self.min_value = QDoubleSpinBox()
        self.min_value.setRange(-1e9, 1e9)
        self.min_value.setDecimals(3)
        self.min_value.setSingleStep(0.05)
        self.filter_on = QCheckBox("min")
        for w in (self.filter_on, self.measure, self.min_value):
            filt.addWidget(w)
        self.filter_on.toggled.connect(self._filter_changed)
        self.min_value.valueChanged.connect(self._filter_changed)
        self.measure.currentTextChanged.connect(self._filter_changed)
        lay.addWidget(QLabel("Filter by measurement"))
        lay.addLayout(filt)

        row = QHBoxLayout()
        self.new_class = QComboBox()
        self.new_class.setEditable(True)
        btn = QPushButton("Reclassify selected")
        btn.clicked.connect(self._reclassify)
        row.addWidget(self.new_class)
        row.addWidget(btn)
        lay.addLayout(row)

        row = QHBoxLayout()
        self.status = QComboBox()
        self.status.addItems(list(REVIEW_STATES))
        btn = QPushButton("Set review status")
        btn.clicked.connect(self._review)
        row.addWidget(self.status)
        row.addWidget(btn)
        lay.addLayout(row)

        self.save_button = QPushButton("Save (GeoJSON + audit log)")
        self.save_button.clicked.connect(self.save)
        lay.addWidget(self.save_button)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        lay.addWidget(self.message)
        self.refresh()

    # ---- display ------------------------------------------------------------------------
    def current(self):
        return self.desk.sources.get(self.source.currentText())

    def refresh(self, *_args) -> None:
        """Re-read classes, counts and measurements of the chosen object set."""
        src = self.current()
        self.table.blockSignals(True)
        self.table.setRowCount(0)
        if src is None:
            self.table.blockSignals(False)
            return
        colors = store_class_colors(src.store)
        counts = src.store.class_counts()
        for i, (name, n) in enumerate(sorted(counts.items(), key=lambda kv: -kv[1])):
            self.table.insertRow(i)
            show = QTableWidgetItem()
            show.setCheckState(_checked(name not in src.hidden_classes))
            show.setData(256, name)  # Qt.UserRole
            self.table.setItem(i, 0, show)
            item = QTableWidgetItem(name or "(unclassified)")
            item.setBackground(QColor(*colors.get(name, (128, 128, 128))))
            self.table.setItem(i, 1, item)
            self.table.setItem(i, 2, QTableWidgetItem(f"{n:,}"))
        self.table.blockSignals(False)
        self.measure.blockSignals(True)
        self.measure.clear()
        self.measure.addItems(sorted(src.store.measurements))
        if src.filter_measurement:
            self.measure.setCurrentText(src.filter_measurement)
        self.measure.blockSignals(False)
        present = [c for c in counts if c]
        self.new_class.clear()
        self.new_class.addItems(list(dict.fromkeys(present + list(EXTRA_CLASSES))))

    def _class_toggled(self, item) -> None:
        src = self.current()
        if src is None or item.column() != 0:
            return
        name = item.data(256)
        if item.checkState() == _checked(True):
            src.hidden_classes.discard(name)
        else:
            src.hidden_classes.add(name)
        self.desk.apply_filters(src.name)

    def _filter_changed(self, *_args) -> None:
        src = self.current()
        if src is None:
            return
        src.filter_measurement = self.measure.currentText() or None
        src.filter_min = self.min_value.value() if self.filter_on.isChecked() else None
        self.desk.apply_filters(src.name)

    # ---- actions ------------------------------------------------------------------------
    def _reclassify(self) -> None:
        src = self.current()
        if src is not None:
            n = self.desk.reclassify_selected(src.name, self.new_class.currentText())
            self.message.setText(f"reclassified {n} object(s) as {self.new_class.currentText()}")
            self.refresh()

    def _review(self) -> None:
        src = self.current()
        if src is not None:
            n = self.desk.review_selected(src.name, self.status.currentText())
            self.message.setText(f"{n} object(s) marked {self.status.currentText()} by {self.desk.reviewer}")

    def save(self) -> dict[str, int]:
        self.desk.reviewer = self.reviewer.text() or self.desk.reviewer
        saved = self.desk.save()
        self.message.setText("saved: " + (", ".join(f"{k} ({v} edits)" for k, v in saved.items()) or "nothing changed"))
        self.refresh()
        return saved


def _checked(on: bool):
    from qtpy.QtCore import Qt

    return Qt.CheckState.Checked if on else Qt.CheckState.Unchecked
