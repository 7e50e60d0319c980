/*
 * app.js: what every page shares (no build step, no framework beyond htmx).
 *
 * Live regions. A page marks the parts that the stream can change:
 *
 *   <section id="board" hx-get="/desk/board/?date=2030-05-01" hx-trigger="live"
 *            hx-swap="outerHTML" data-live="appointment.created appointment.updated">
 *
 * When an event of one of those types arrives, the region is asked to refresh ("live"
 * htmx trigger) and the server renders it again with the same template as the first
 * page. Nothing polls: the socket says when, the server says what. Several events in
 * a burst make one request per region (coalesced over a short delay).
 *
 * Connection state (live / reconnecting / stale / unauthorized) is shown in the header
 * badge; catching up after a reconnect replays the missed events, which refresh the
 * regions they concern.
 *
 * Countdowns: <time data-countdown datetime="ISO">…</time> counts down each second.
 */
(function () {
  "use strict";

  var COALESCE_MS = 120;
  var STATE_TEXT = {
    connecting: "Connecting…",
    live: "Live",
    reconnecting: "Reconnecting…",
    stale: "Stale: reconnecting",
    unauthorized: "Signed out: reload to sign in",
    stopped: "Offline",
  };
  // Announced to screen readers as the desk would say it: when, not which row id.
  var ANNOUNCE = {
    "appointment.created": function (d) {
      return "New appointment" + at(d.start) + ".";
    },
    "appointment.updated": function (d) {
      return "Appointment" + at(d.start) + " is now " + word(d.status) + ".";
    },
    "appointment.removed": function () {
      return "An appointment was given to another therapist.";
    },
    "trip.assigned": function (d) {
      return capital(word(d.leg)) + at(d.window_start) + " given to a driver.";
    },
    "trip.updated": function (d) {
      return capital(word(d.leg)) + at(d.window_start) + " is now " + word(d.status) + ".";
    },
    "trip.waiting": function (d) {
      return capital(word(d.leg)) + at(d.window_start) + " is waiting for a driver.";
    },
    "notification.failed": function () {
      return "A notification failed to send.";
    },
  };

  var WORDS = null; // value -> label, from the page (#live-words)

  function word(value) {
    if (WORDS === null) {
      var source = document.getElementById("live-words");
      WORDS = source ? JSON.parse(source.textContent) : {};
    }
    var text = WORDS[value] || String(value || "").replace(/_/g, " ");
    return text.toLowerCase();
  }

  function capital(text) {
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  // " on Tue at 11:00" in the business's time zone; "" when there is no time to say.
  function at(iso) {
    var instant = iso ? new Date(iso) : null;
    var zone = document.body.getAttribute("data-tz") || undefined;
    if (!instant || isNaN(instant.getTime())) return "";
    try {
      var day = new Intl.DateTimeFormat("en-GB", { timeZone: zone, weekday: "short" });
      var time = new Intl.DateTimeFormat("en-GB", {
        timeZone: zone, hour: "2-digit", minute: "2-digit", hourCycle: "h23",
      });
      return " on " + day.format(instant) + " at " + time.format(instant);
    } catch (e) {
      return ""; // an unknown zone: say no time rather than a wrong one
    }
  }

  var pending = {}; // region id -> timer

  function refreshRegions(type) {
    var regions = document.querySelectorAll("[data-live]");
    for (var i = 0; i < regions.length; i++) {
      var region = regions[i];
      var types = region.getAttribute("data-live").split(/\s+/);
      if (types.indexOf(type) === -1 && types.indexOf("*") === -1) continue;
      schedule(region);
    }
  }

  function schedule(region) {
    var key = region.id;
    if (!key) return;
    if (pending[key]) return;
    pending[key] = window.setTimeout(function () {
      delete pending[key];
      // The element may have been replaced by an earlier swap: look it up again.
      var current = document.getElementById(key);
      if (current && window.htmx) window.htmx.trigger(current, "live");
    }, COALESCE_MS);
  }

  function announce(event) {
    var make = ANNOUNCE[event.type];
    var announcer = document.getElementById("announcer");
    if (!make || !announcer || !event.data) return;
    // Replace the text so that a polite screen reader reads the newest change.
    announcer.textContent = make(event.data);
  }

  function showState(state) {
    var badge = document.querySelector("[data-conn]");
    if (!badge) return;
    badge.setAttribute("data-state", state);
    var text = badge.querySelector("[data-conn-text]");
    if (text) text.textContent = STATE_TEXT[state] || state;
    document.body.setAttribute("data-live-state", state);
  }

  function startLive() {
    var after = document.body.getAttribute("data-live-after");
    if (after === null || !window.LiveStream) return null;
    var live = new window.LiveStream({ after: parseInt(after, 10) || 0 });
    live.addEventListener("state", function (e) {
      showState(e.detail.state);
    });
    live.addEventListener("event", function (e) {
      refreshRegions(e.detail.type);
      announce(e.detail);
      document.dispatchEvent(new CustomEvent("live:event", { detail: e.detail }));
    });
    live.start();
    return live;
  }

  function tickCountdowns() {
    var now = Date.now();
    var items = document.querySelectorAll("time[data-countdown]");
    for (var i = 0; i < items.length; i++) {
      var el = items[i];
      var left = Math.round((Date.parse(el.getAttribute("datetime")) - now) / 1000);
      if (isNaN(left)) continue;
      if (left <= 0) {
        el.textContent = "deadline passed";
        el.classList.add("overdue");
        continue;
      }
      var h = Math.floor(left / 3600);
      var m = Math.floor((left % 3600) / 60);
      var s = left % 60;
      el.textContent =
        (h ? h + "h " : "") + (h || m ? m + "m " : "") + (s < 10 && (h || m) ? "0" : "") + s + "s left";
      el.classList.toggle("soon", left < 300);
    }
  }

  // A region the server just re-rendered flashes briefly, so a change is noticed.
  document.addEventListener("htmx:afterSwap", function (e) {
    var target = e.detail && e.detail.elt;
    if (target && target.hasAttribute && target.hasAttribute("data-live")) {
      var fresh = target.id ? document.getElementById(target.id) : target;
      if (fresh) {
        fresh.classList.remove("flash");
        void fresh.offsetWidth; // restart the animation
        fresh.classList.add("flash");
      }
    }
    tickCountdowns();
  });

  document.addEventListener("DOMContentLoaded", function () {
    window.appLive = startLive();
    tickCountdowns();
    window.setInterval(tickCountdowns, 1000);
  });
})();
