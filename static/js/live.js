/*
 * live.js: the browser side of /ws/stream/ (no dependencies).
 *
 *   const live = new LiveStream({after: lastSeqTheServerRenderedInto_thePage});
 *   live.addEventListener("state", (e) => badge.textContent = e.detail.state);
 *   live.on("appointment.updated", (event) => redraw(event.data));
 *   live.addEventListener("event", (e) => console.log(e.detail.seq, e.detail.type));
 *   live.start();
 *
 * Every event is delivered once, in sequence order: the client remembers the last seq it
 * dispatched, resumes from it on every reconnect (?after=), and drops anything at or
 * below it. States ("state" events, and `live.state`):
 *   connecting    first attempt
 *   live          open, frames or pings arriving
 *   stale         open, but nothing (not even a ping) for more than two ping intervals;
 *                 the socket is replaced at once
 *   reconnecting  waiting for the next attempt (exponential backoff with full jitter)
 *   unauthorized  the server wants a login: stopped (close code 4401, or a refused
 *                 handshake while /api/events/ answers 401/403)
 *   stopped       stop() was called
 *   reload        what the client missed is no longer kept (close code 4410, or 410
 *                 from /api/events/): stopped, and the page reloads unless
 *                 `reloadPage: false` (then listen for the "reload" state)
 * Close code 4008 (the client fell behind) reconnects at once from the last seq.
 * While the socket cannot be opened, the client catches up over HTTP (/api/events/) when
 * `catchUpUrl` is set, so a page stays current through a realtime outage.
 */
(function (global) {
  "use strict";

  var TOO_SLOW = 4008;
  var UNAUTHENTICATED = 4401;
  var STREAM_PRUNED = 4410;

  function LiveStream(options) {
    var target = new EventTarget();
    // Pages call addEventListener etc. on the stream itself.
    this.addEventListener = target.addEventListener.bind(target);
    this.removeEventListener = target.removeEventListener.bind(target);
    this.dispatchEvent = target.dispatchEvent.bind(target);
    options = options || {};
    var loc = global.location;
    this.url =
      options.url ||
      (loc.protocol === "https:" ? "wss://" : "ws://") + loc.host + "/ws/stream/";
    this.token = options.token || null;
    this.catchUpUrl = options.catchUpUrl === undefined ? "/api/events/" : options.catchUpUrl;
    this.pingSeconds = options.pingSeconds || 20;
    this.minDelay = options.minDelay || 500; // ms, first retry
    this.maxDelay = options.maxDelay || 30000; // ms, cap of the backoff
    this.lastSeq = options.after === undefined || options.after === null ? null : options.after;
    this.state = "stopped";
    this.attempt = 0;
    this.socket = null;
    this.timer = null;
    this.watchdog = null;
    this.lastFrameAt = 0;
    this.opened = false;
    this.reloadPage = options.reloadPage !== false;
  }

  LiveStream.prototype.on = function (type, listener) {
    this.addEventListener(type, function (e) {
      listener(e.detail);
    });
    return this;
  };

  LiveStream.prototype.start = function () {
    if (this.state !== "stopped" && this.state !== "unauthorized") return this;
    this.attempt = 0;
    this._setState("connecting");
    this._connect();
    var self = this;
    this.watchdog = global.setInterval(function () {
      self._checkStale();
    }, 1000);
    return this;
  };

  LiveStream.prototype.stop = function () {
    this._halt("stopped");
  };

  LiveStream.prototype._halt = function (state) {
    global.clearTimeout(this.timer);
    global.clearInterval(this.watchdog);
    this._dropSocket();
    this._setState(state);
  };

  LiveStream.prototype._gone = function () {
    // Retention deleted events after lastSeq: only a fresh page is complete again.
    this._halt("reload");
    if (this.reloadPage) global.location.reload();
  };

  LiveStream.prototype._setState = function (state) {
    if (this.state === state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state: state, lastSeq: this.lastSeq } }));
  };

  LiveStream.prototype._socketUrl = function () {
    var params = [];
    if (this.lastSeq !== null) params.push("after=" + encodeURIComponent(this.lastSeq));
    if (this.token) params.push("token=" + encodeURIComponent(this.token));
    return this.url + (params.length ? "?" + params.join("&") : "");
  };

  LiveStream.prototype._connect = function () {
    var self = this;
    var socket = new WebSocket(this._socketUrl());
    this.socket = socket;
    this.opened = false;
    socket.onopen = function () {
      if (self.socket !== socket) return;
      self.opened = true;
      self.lastFrameAt = Date.now();
      self._setState("live");
    };
    socket.onmessage = function (message) {
      if (self.socket !== socket) return; // a replaced socket's last words
      self.lastFrameAt = Date.now();
      // A backoff resets only once the server has spoken: a socket that opens and is
      // closed at once must keep backing off.
      self.attempt = 0;
      if (self.state !== "live") self._setState("live");
      var frame = JSON.parse(message.data);
      if (frame.type === "events") self._deliver(frame.events);
    };
    socket.onclose = function (close) {
      if (self.socket !== socket) return;
      self.socket = null;
      self._closed(close.code, self.opened);
    };
  };

  LiveStream.prototype._dropSocket = function () {
    var socket = this.socket;
    this.socket = null;
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = null;
      try {
        socket.close();
      } catch (ignored) {
        // closing a socket that never opened throws in some browsers; it is dropped anyway
      }
    }
  };

  LiveStream.prototype._deliver = function (events) {
    for (var i = 0; i < events.length; i++) {
      var event = events[i];
      if (this.lastSeq !== null && event.seq <= this.lastSeq) continue; // seen already
      this.lastSeq = event.seq;
      this.dispatchEvent(new CustomEvent("event", { detail: event }));
      this.dispatchEvent(new CustomEvent(event.type, { detail: event }));
    }
  };

  LiveStream.prototype._closed = function (code, wasOpen) {
    if (code === UNAUTHENTICATED) return this._halt("unauthorized");
    if (code === TOO_SLOW) return this._retry(0); // behind: come back at once from lastSeq
    if (code === STREAM_PRUNED) return this._gone();
    if (!wasOpen && this.catchUpUrl) {
      // A refused handshake looks the same as a network error to a page; HTTP tells
      // which (a 401/403 means log in again), and brings the page up to date meanwhile.
      var self = this;
      this._setState("reconnecting");
      this.catchUp().then(
        function () {
          self._retry(self._backoff());
        },
        function (error) {
          if (error && error.unauthorized) self._halt("unauthorized");
          else if (error && error.gone) self._gone();
          else self._retry(self._backoff());
        }
      );
      return;
    }
    this._retry(this._backoff());
  };

  LiveStream.prototype._backoff = function () {
    // Full jitter: a fleet of pages dropped together does not come back together.
    var ceiling = Math.min(this.maxDelay, this.minDelay * Math.pow(2, this.attempt));
    this.attempt += 1;
    return Math.random() * ceiling;
  };

  LiveStream.prototype._retry = function (delay) {
    if (this.state === "stopped" || this.state === "unauthorized" || this.state === "reload") {
      return;
    }
    this._setState("reconnecting");
    var self = this;
    global.clearTimeout(this.timer);
    this.timer = global.setTimeout(function () {
      self._connect();
    }, delay);
  };

  LiveStream.prototype._checkStale = function () {
    if (!this.socket || !this.opened) return;
    if (Date.now() - this.lastFrameAt > 2 * this.pingSeconds * 1000) {
      // Half-open (a laptop woke up, a proxy forgot us): replace the socket now rather
      // than wait for the browser to notice.
      this._setState("stale");
      this._dropSocket();
      this._retry(0);
    }
  };

  /* Read what was missed over HTTP, oldest first, page by page. Resolves when up to date;
   * rejects with {unauthorized: true} on 401/403, {gone: true} on 410. */
  LiveStream.prototype.catchUp = function () {
    var self = this;
    // A page that started "from now" has no position to read from: ask only whether the
    // login still holds.
    var probeOnly = self.lastSeq === null;
    function page() {
      var url = self.catchUpUrl + (probeOnly ? "?after=0&limit=1" : "?after=" + self.lastSeq);
      var headers = { Accept: "application/json" };
      if (self.token) headers.Authorization = "Token " + self.token;
      return global.fetch(url, { credentials: "same-origin", headers: headers }).then(function (response) {
        if (response.status === 401 || response.status === 403) {
          throw { unauthorized: true };
        }
        if (response.status === 410) {
          if (probeOnly) return; // the login holds; a probe reads no events
          throw { gone: true };
        }
        if (!response.ok) throw new Error("catch-up answered " + response.status);
        return response.json().then(function (body) {
          if (probeOnly) return;
          self._deliver(body.events);
          if (body.more) return page();
        });
      });
    }
    return page();
  };

  global.LiveStream = LiveStream;
})(window);
