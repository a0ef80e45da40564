# Paravirt: the two entry points a new machine needs. See README.md.
#   make run    build everything and run samples/hello on the best available backend
#   make test   build everything and run every test: xunit suites + KVM for real in a nested VM
#   make pack   the NuGet packages (+ .snupkg symbols) into nuget/, the local feed the packaging tests install from
.PHONY: run test build pack deps clean

CONFIGURATION ?= Release

deps:
	@bash eng/install-deps.sh

build: deps
	dotnet build Paravirt.sln -c $(CONFIGURATION) -nologo -v:q -clp:ErrorsOnly

run: build
	dotnet src/Paravirt.Cli/bin/$(CONFIGURATION)/net10.0/paravirt.dll run artifacts/guests/hello.elf --verbose --stats

pack: build
	dotnet pack Paravirt.sln -c $(CONFIGURATION) --no-build -nologo -v:q -clp:ErrorsOnly

test: build pack
	bash eng/test.sh $(CONFIGURATION)

clean:
	rm -rf artifacts
	dotnet clean Paravirt.sln -nologo -v:q
