# Paravirt: the two entry points a new machine needs. See README.md.
#   make run    build everything and run samples/hello on the best available backend
#   make test   build everything and run every test: xunit suites + KVM for real in a nested VM
.PHONY: run test build deps clean

CONFIGURATION ?= Release

deps:
	@bash eng/install-deps.sh

build: deps
	dotnet build Paravirt.sln -c $(CONFIGURATION) -nologo -v:q -clp:ErrorsOnly

run: build
	dotnet src/Paravirt.Cli/bin/$(CONFIGURATION)/net10.0/paravirt.dll run artifacts/guests/hello.elf --verbose --stats

test: build
	bash eng/test.sh $(CONFIGURATION)

clean:
	rm -rf artifacts
	dotnet clean Paravirt.sln -nologo -v:q
