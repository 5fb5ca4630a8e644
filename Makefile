# hakmem: plain GNU Makefile (GNU make 4.3). `make help` prints the target lines below.
#
#   make                build lib/libhakmem.so, lib/libhakmem.a, bench/vm, bench/scenarios, tests/bin/*
#   make check          build everything, then run every Check suite (tests/run.sh)
#   make check-san      the same suites under ASan+UBSan (built apart in build-san/)
#   make check-tsan     the same suites under ThreadSanitizer (built apart in build-tsan/)
#   make check-links    check that every relative link of the Markdown files resolves
#   make vm             build, then run ./bench/vm --perf as root (through sudo when not root)
#   make bench-compare  full allocator comparison (3.5-6 min) into bench/out/
#   make bench-compare-quick  the same, 3 rounds at 1/4 size (about 40 s)
#   make setup          install the Debian packages, build libperf into .deps/ (scripts/setup.sh)
#   make install        install the libraries, hakmem.h, hakmem.pc (PREFIX=/usr/local DESTDIR=)
#   make uninstall      remove what install installed
#   make clean          remove build/, build-san/, build-tsan/, lib/libhakmem.*, bench/vm, bench/scenarios, bench/out/, tests/bin/
#   make distclean      clean, and remove .deps/ (packages stay installed)
#   make help           print these lines
#
# Any build first runs scripts/setup.sh once (stamp .deps/setup.stamp, redone when
# the script changes): it installs what is missing (apt-get as root, or through sudo)
# and builds libperf into .deps/libperf.
#
# Flags: the project's own are HAK_CPPFLAGS, HAK_CFLAGS and HAK_LDFLAGS (and
# HAK_SAN_CPPFLAGS, HAK_SAN_CFLAGS in a sanitizer build); a CPPFLAGS, CFLAGS or
# LDFLAGS given on the command line or in the environment is added after them
# (CFLAGS defaults to -O2 -g). SAN=address (or SAN=1) and SAN=thread select a
# sanitizer build, written to build-san/ and build-tsan/: the library then leaves out
# the malloc family (-DHAK_SANITIZE=1) and the tests use the hak_ API.
# Each part has its own fragment: perf/perf.mk, bench/vm.mk, bench/compare.mk, tests/tests.mk.

.DEFAULT_GOAL := all
.DELETE_ON_ERROR:

CC       ?= gcc
PREFIX   ?= /usr/local
DESTDIR  ?=
LIBDIR   ?= $(PREFIX)/lib
INCDIR   ?= $(PREFIX)/include
DEPS     := .deps
SAN      ?=

CFLAGS   ?= -O2 -g
HAK_CPPFLAGS := -D_GNU_SOURCE
HAK_CFLAGS   := -Wall -Wextra -std=gnu11 -pthread
HAK_LDFLAGS  := -pthread
DEPFLAGS     := -MMD -MP

# Sanitizer builds: flags that the scenario binary never gets (see bench/compare.mk).
ifeq ($(SAN),)
  BUILD := build
  HAK_SAN_CPPFLAGS :=
  HAK_SAN_CFLAGS :=
else ifneq ($(filter 1 address,$(SAN)),)
  BUILD := build-san
  HAK_SAN_CPPFLAGS := -DHAK_SANITIZE=1
  HAK_SAN_CFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer
else ifeq ($(SAN),thread)
  BUILD := build-tsan
  HAK_SAN_CPPFLAGS := -DHAK_SANITIZE=1
  HAK_SAN_CFLAGS := -fsanitize=thread
else
  $(error SAN=$(SAN): use SAN=address (or SAN=1) or SAN=thread)
endif

# Compile and link lines: project flags first, then the user's, then rule-specific ones.
HAK_CC   = $(CC) $(HAK_CPPFLAGS) $(HAK_SAN_CPPFLAGS) $(CPPFLAGS) $(HAK_CFLAGS) $(HAK_SAN_CFLAGS) $(CFLAGS) $(DEPFLAGS)
HAK_LD   = $(CC) $(HAK_CFLAGS) $(HAK_SAN_CFLAGS) $(CFLAGS) $(HAK_LDFLAGS) $(LDFLAGS)

PKG_CONFIG_PATH := $(CURDIR)/$(DEPS)/libperf/lib/pkgconfig:$(PKG_CONFIG_PATH)
export PKG_CONFIG_PATH

.PHONY: all help setup lib check check-san check-tsan check-links vm install uninstall clean distclean
all: lib

help:
	@sed -n 's/^#   \(make .*\)/\1/p' $(firstword $(MAKEFILE_LIST))

# ---- set-up: installs packages and builds libperf when something is missing
SETUP_STAMP := $(DEPS)/setup.stamp
$(SETUP_STAMP): scripts/setup.sh
	@scripts/setup.sh
	@touch $@

setup:
	@scripts/setup.sh && touch $(SETUP_STAMP)

# ---- the allocator: lib/ and its release backends io/
LIB_SRCS := $(wildcard lib/*.c) $(wildcard io/*.c)
LIB_PIC  := $(LIB_SRCS:%.c=$(BUILD)/pic/%.o)
LIB_FLAGS := -fPIC -fvisibility=hidden -ftls-model=initial-exec -fno-semantic-interposition \
             -fno-builtin-malloc -fno-builtin-free -Ilib -Iio
LIB_LIBS := -luring -lpthread
# The shared library carries liburing inside it, its symbols hidden: an
# LD_PRELOAD then adds no library to the program (one less to map and
# relocate at every start), and a program that brings its own liburing, of
# another version, keeps it (liburing-dev's liburing.a has no absolute
# relocations, so it links into a shared object).
SO_LIBS  := -Wl,--exclude-libs,liburing.a -l:liburing.a -lpthread
HAK_OBJS := $(LIB_PIC)

ifeq ($(SAN),)
  LIBSO := lib/libhakmem.so
  LIBA  := lib/libhakmem.a
else
  LIBSO := $(BUILD)/libhakmem.so   # a sanitizer build never replaces the real one
  LIBA  := $(BUILD)/libhakmem.a
endif

lib: $(LIBSO) $(LIBA)

$(BUILD)/pic/%.o: %.c | $(SETUP_STAMP)
	@mkdir -p $(dir $@)
	$(HAK_CC) $(LIB_FLAGS) -c $< -o $@

$(LIBSO): $(LIB_PIC) Makefile
	@mkdir -p $(dir $@)
	$(HAK_LD) -shared -Wl,-soname,libhakmem.so -Wl,-z,now -o $@ $(LIB_PIC) $(SO_LIBS)

$(LIBA): $(LIB_PIC)
	@mkdir -p $(dir $@)
	@rm -f $@
	ar rcs $@ $^

# A program that links libhakmem.a gets hakmem as its malloc.
HAK_LINK := $(LIBA) $(LIB_LIBS)

include perf/perf.mk
include bench/vm.mk
include bench/compare.mk
include tests/tests.mk

check-links:
	@scripts/check-links.sh

# ---- the headline benchmark; tracepoints need root
vm: all
	scripts/asroot ./bench/vm --perf

# ---- install
hakmem.pc: Makefile
	@printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(LIBDIR)' 'includedir=$(INCDIR)' '' \
	  'Name: hakmem' 'Description: malloc with batched, vectored page release' \
	  'Version: 0.1.0' 'Libs: -L$${libdir} -lhakmem' 'Libs.private: -luring -lpthread' \
	  'Cflags: -I$${includedir}' > $@

install: lib hakmem.pc
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR) $(DESTDIR)$(LIBDIR)/pkgconfig
	install -m 755 $(LIBSO) $(DESTDIR)$(LIBDIR)/libhakmem.so
	install -m 644 $(LIBA) $(DESTDIR)$(LIBDIR)/libhakmem.a
	install -m 644 lib/hakmem.h $(DESTDIR)$(INCDIR)/hakmem.h
	install -m 644 hakmem.pc $(DESTDIR)$(LIBDIR)/pkgconfig/hakmem.pc

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libhakmem.so $(DESTDIR)$(LIBDIR)/libhakmem.a \
	      $(DESTDIR)$(INCDIR)/hakmem.h $(DESTDIR)$(LIBDIR)/pkgconfig/hakmem.pc

clean:
	rm -rf build build-san build-tsan lib/libhakmem.so lib/libhakmem.a hakmem.pc $(CLEAN_EXTRA)

distclean: clean
	rm -rf $(DEPS)

# Header dependencies written by -MMD -MP next to each object (absent before the first build).
-include $(HAK_OBJS:.o=.d)
