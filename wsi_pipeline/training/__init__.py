"""Training: a shared loop (:mod:`.trainer`) and one module per task (:mod:`.nuclei`)."""
