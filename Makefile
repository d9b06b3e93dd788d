# Thin aliases for ./dev, for those whose fingers type make.
.PHONY: run test install
run:
	./dev run
test:
	./dev test
install:
	./dev install
