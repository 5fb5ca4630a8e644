# hakmem: plain GNU Makefile. `make` builds the libraries, tests and benchmarks;
# `make check` runs the tests; `sudo make vm` runs the headline benchmark.
# Each part has its own fragment: perf/perf.mk, bench/bench.mk, tests/tests.mk.

CC       ?= gcc
PREFIX   ?= /usr/local
DESTDIR  ?=
LIBDIR   ?= $(PREFIX)/lib
INCDIR   ?= $(PREFIX)/include
DEPS     := .deps
BUILD    := build
SAN      ?=

WARN     := -Wall -Wextra
CFLAGS   ?= -O2 -g
CFLAGS   += $(WARN) -std=gnu11 -pthread -D_GNU_SOURCE
ifeq ($(SAN),1)
  CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -DHAK_SANITIZE=1
  LDFLAGS += -fsanitize=address,undefined
  BUILD := build-san
endif

PKG_CONFIG_PATH := $(CURDIR)/$(DEPS)/libperf/lib/pkgconfig:$(PKG_CONFIG_PATH)
export PKG_CONFIG_PATH

# ---- set-up: installs packages and builds libperf when something is missing
SETUP_STAMP := $(DEPS)/setup.stamp
$(SETUP_STAMP): scripts/setup.sh
	@scripts/setup.sh
	@touch $@

.PHONY: all setup lib check check-san vm install uninstall clean distclean
all: lib

setup:
	@scripts/setup.sh && touch $(SETUP_STAMP)

# ---- the allocator: lib/ and its release backends io/
LIB_SRCS := $(wildcard lib/*.c) $(wildcard io/*.c)
LIB_HDRS := $(wildcard lib/*.h) $(wildcard io/*.h)
LIB_PIC  := $(LIB_SRCS:%.c=$(BUILD)/pic/%.o)
LIB_CFLAGS := $(CFLAGS) -fPIC -fvisibility=hidden -ftls-model=initial-exec -fno-semantic-interposition \
              -fno-builtin-malloc -fno-builtin-free -Ilib -Iio
LIB_LIBS := -luring -lpthread

ifeq ($(SAN),1)
  LIBSO := $(BUILD)/libhakmem.so   # the sanitizer build never replaces the real one
  LIBA  := $(BUILD)/libhakmem.a
else
  LIBSO := lib/libhakmem.so
  LIBA  := lib/libhakmem.a
endif

lib: $(LIBSO) $(LIBA)

$(BUILD)/pic/%.o: %.c $(LIB_HDRS) | $(SETUP_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(LIB_CFLAGS) -c $< -o $@

$(LIBSO): $(LIB_PIC)
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,-soname,libhakmem.so -Wl,-z,now -o $@ $^ $(LDFLAGS) $(LIB_LIBS)

$(LIBA): $(LIB_PIC)
	@rm -f $@
	ar rcs $@ $^

# A program that links libhakmem.a gets hakmem as its malloc.
HAK_LINK := $(LIBA) $(LIB_LIBS)

-include perf/perf.mk
-include bench/vm.mk
-include bench/compare.mk
-include tests/tests.mk

# ---- the two commands README gives
vm: all $(SETUP_STAMP)
	./bench/vm --perf

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
	rm -rf build build-san $(LIBSO) $(LIBA) hakmem.pc $(CLEAN_EXTRA)

distclean: clean
	rm -rf $(DEPS)
