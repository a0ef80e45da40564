# Paravirt: the two entry points a new machine needs. See README.md.
#   make run    build everything and run samples/hello on the best available backend
#   make test   build everything and run every test: xunit suites + KVM for real on this machine and in a nested VM
#   make pack   the NuGet packages (+ .snupkg symbols) into nuget/, the local feed the packaging tests install from
#   make public-api   rewrite src/*/PublicAPI.Unshipped.txt from the current public API (after RS0016/RS0017 errors)
#   make abi          regenerate paravirt/abi.h and docs/abi-reference.md from src/Hypercall.Abi (after ABI changes)
.PHONY: run test build pack public-api abi deps clean

CONFIGURATION ?= Release

# The one install step: eng/install-deps.sh installs only what is missing (a dpkg query when nothing is). make run and
# make test ask for it; make build does not, so a build never touches apt.
deps:
	@bash eng/install-deps.sh

build:
	dotnet build Paravirt.sln -c $(CONFIGURATION) -nologo -v:q -clp:ErrorsOnly

# hello exits with status 7 on purpose (so the status is seen travelling back to the host): the target succeeds
# exactly when the guest ran and returned that status.
run: deps
	@$(MAKE) --no-print-directory build
	@status=0; dotnet src/Paravirt.Cli/bin/$(CONFIGURATION)/net10.0/paravirt.dll run artifacts/guests/hello.elf --verbose --stats || status=$$?; \
	  echo "make run: hello exited with status $$status (7 expected)"; test $$status -eq 7

pack: build
	dotnet pack Paravirt.sln -c $(CONFIGURATION) --no-build -nologo -v:q -clp:ErrorsOnly

# Unshipped = the public API now, minus what PublicAPI.Shipped.txt already lists (RS0016's code fix, from empty).
PUBLIC_API_PROJECTS := src/Hypercall.Abi/Hypercall.Abi.csproj src/Hypervisor.Core/Hypervisor.Core.csproj
public-api:
	@for p in $(PUBLIC_API_PROJECTS); do \
	  printf '#nullable enable\n' > "$$(dirname $$p)/PublicAPI.Unshipped.txt"; \
	  dotnet format analyzers "$$p" --diagnostics RS0016 --severity warn -v q || exit 1; \
	done
	git diff --stat -- 'src/*/PublicAPI.*.txt'

abi:
	dotnet run --project tools/Paravirt.AbiGen -- src/Guest.Sdk/native/include/paravirt/abi.h
	dotnet run --project tools/Paravirt.AbiGen --no-build -- --markdown docs/abi-reference.md

test: deps
	@$(MAKE) --no-print-directory build pack
	bash eng/test.sh $(CONFIGURATION)

clean:
	rm -rf artifacts
	dotnet clean Paravirt.sln -nologo -v:q
