# The scenario suite: bench/scenarios from bench/scen*.c (one binary, plain malloc
# API, NOT linked with hakmem so every allocator runs it through LD_PRELOAD) and
# the runner bench/compare. `make bench-compare` runs the full suite (3.5-6 min)
# and writes bench/out/compare.{txt,csv,raw,png}; bench/README.md is its manual.

SCEN_SRCS := $(wildcard bench/scen*.c)
SCEN_OBJS := $(SCEN_SRCS:%.c=$(BUILD)/%.o)
HAK_OBJS  += $(SCEN_OBJS)

ifeq ($(SAN),)
all: bench/scenarios
endif

# The project's flags without anything from lib/ (only the C library's malloc API),
# and never a sanitizer: ASan would replace the very malloc LD_PRELOAD is meant to choose.
SCEN_CC = $(CC) $(HAK_CPPFLAGS) $(CPPFLAGS) $(HAK_CFLAGS) $(filter-out -fsanitize=%,$(CFLAGS)) $(DEPFLAGS)
SCEN_LD = $(CC) $(HAK_CFLAGS) $(filter-out -fsanitize=%,$(CFLAGS)) $(HAK_LDFLAGS) \
          $(filter-out -fsanitize=%,$(LDFLAGS))

$(SCEN_OBJS): $(BUILD)/%.o: %.c | $(SETUP_STAMP)
	@mkdir -p $(dir $@)
	$(SCEN_CC) -c $< -o $@

bench/scenarios: $(SCEN_OBJS)
	$(SCEN_LD) -o $@ $^

# The Check test runs `bench/compare --smoke`: it needs the binary built.
TEST_EXTRA_DEPS += bench/scenarios

.PHONY: bench-compare bench-compare-quick
bench-compare: bench/scenarios $(LIBSO)
	@mkdir -p bench/out
	@# no pipe into tee: its status would hide a failed run (sh has no pipefail)
	bench/compare --csv bench/out/compare.csv --png bench/out/compare.png \
	  --raw bench/out/compare.raw > bench/out/compare.txt; rc=$$?; \
	  cat bench/out/compare.txt; exit $$rc

bench-compare-quick: bench/scenarios $(LIBSO)
	@mkdir -p bench/out
	bench/compare --quick --csv bench/out/compare-quick.csv --png bench/out/compare-quick.png

CLEAN_EXTRA += bench/scenarios bench/out
