"""ML model components: model cards, labelled data sets, quality metrics, reference inference,
golden-set replay through a hub's broker, container footprint, and the figures the gate reads."""
