"""Reports: Allure wiring (steps, labels, environment, categories) and run records."""
