// algohost console: live lists and logs by polling the console's JSON, and the editor page.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);

  async function getJSON(url) {
    const response = await fetch(url, {headers: {Accept: "application/json"}, credentials: "same-origin"});
    return response.json();
  }

  function setStatus(element, status) {
    element.textContent = status;
    element.className = "status " + status;
  }

  function cell(text, href) {
    const td = document.createElement("td");
    if (href) { const a = document.createElement("a"); a.href = href; a.textContent = text; td.append(a); }
    else td.textContent = text;
    return td;
  }

  // Jobs list: rows refreshed every two seconds from /console/jobs.json.
  function liveJobs(tbody) {
    const refresh = async () => {
      try {
        const data = await getJSON(tbody.dataset.liveJobs);
        tbody.replaceChildren(...data.jobs.map((job) => {
          const tr = document.createElement("tr");
          const status = cell(""); const badge = document.createElement("span");
          setStatus(badge, job.status); status.append(badge);
          tr.append(cell(job.id, job.url), cell(job.algorithm), status, cell(job.created_at),
                    cell(job.total_ms == null ? "" : Math.round(job.total_ms) + " ms"));
          return tr;
        }));
        const empty = $("jobs-empty"); if (empty) empty.hidden = data.jobs.length > 0;
      } catch (e) { /* the next round tries again */ }
      setTimeout(refresh, 2000);
    };
    setTimeout(refresh, 2000);
  }

  // Batches list: progress bars and counts refreshed every two seconds.
  function liveBatches(tbody) {
    const refresh = async () => {
      try {
        const data = await getJSON(tbody.dataset.liveBatches);
        for (const batch of data.batches) {
          const row = tbody.querySelector(`tr[data-batch="${batch.id}"]`);
          if (!row) continue;
          const bar = row.querySelector("progress");
          bar.max = batch.total; bar.value = batch.finished;
          row.querySelector(".count").textContent = batch.finished + "/" + batch.total;
          row.querySelector(".failed").textContent = batch.failed;
          setStatus(row.querySelector(".status"), batch.status);
        }
      } catch (e) { /* the next round tries again */ }
      setTimeout(refresh, 2000);
    };
    setTimeout(refresh, 2000);
  }

  // A build's log as server-sent events until the build ends; calls done({status, error}).
  // EventSource reconnects by itself and resumes after the last line it had.
  function followBuild(url, pre, statusElement, done) {
    const source = new EventSource(url);
    let fresh = true;
    source.onmessage = (event) => {
      if (fresh) { pre.textContent = ""; fresh = false; }
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.append(event.data + "\n");
      if (atBottom) pre.scrollTop = pre.scrollHeight;
      if (statusElement && statusElement.textContent === "queued") setStatus(statusElement, "building");
    };
    source.addEventListener("end", (event) => {
      source.close();
      const data = JSON.parse(event.data);
      if (statusElement) setStatus(statusElement, data.status);
      if (done) done(data);
    });
    source.addEventListener("timeout", () => source.close());
  }

  // A job page that is not finished reloads itself once its job is.
  function watchJob(element) {
    const round = async () => {
      try {
        const data = await getJSON(element.dataset.jobStatus);
        if (data.terminal) { window.location.reload(); return; }
        setStatus($("job-status"), data.status);
      } catch (e) { /* try again */ }
      setTimeout(round, 1500);
    };
    setTimeout(round, 1500);
  }

  function editorPage(page) {
    const files = JSON.parse($("editor-files").textContent);
    const tabs = $("file-tabs"), holder = $("file-editors");
    const editors = {};
    const names = Object.keys(files).sort((a, b) =>
      (b === "main.py") - (a === "main.py") || a.localeCompare(b));
    const select = (name) => {
      for (const [other, entry] of Object.entries(editors)) {
        entry.box.hidden = other !== name;
        entry.tab.setAttribute("aria-selected", String(other === name));
        entry.tab.tabIndex = other === name ? 0 : -1;
      }
    };
    names.forEach((name, index) => {
      const tab = document.createElement("button");
      tab.type = "button"; tab.role = "tab"; tab.textContent = name; tab.id = "tab-" + index;
      tab.addEventListener("click", () => select(name));
      tab.addEventListener("keydown", (event) => {
        const step = {ArrowRight: 1, ArrowLeft: -1}[event.key];
        if (!step) return;
        const next = names[(names.indexOf(name) + step + names.length) % names.length];
        select(next); editors[next].tab.focus();
      });
      const box = document.createElement("div");
      box.className = "file-editor"; box.role = "tabpanel"; box.setAttribute("aria-labelledby", tab.id);
      box.dataset.file = name;
      tabs.append(tab); holder.append(box);
      editors[name] = {tab, box, editor: window.AlgohostEditor.create(box, files[name], name, page.dataset.styleNonce)};
    });
    if (names.length) select(names[0]);

    const post = (url, body, extra) => fetch(url, {
      method: "POST", credentials: "same-origin", body: JSON.stringify(body),
      headers: Object.assign({"Content-Type": "application/json", Accept: "application/json",
                              "X-CSRF-Token": page.dataset.csrf}, extra || {}),
    }).then(async (response) => ({ok: response.ok, status: response.status, data: await response.json()}));

    const buildButton = $("build-button"), buildState = $("build-state"), log = $("editor-log");
    buildButton.addEventListener("click", async () => {
      buildButton.disabled = true; buildState.textContent = "publishing…"; log.textContent = "";
      const sources = {};
      for (const [name, entry] of Object.entries(editors)) sources[name] = entry.editor.text();
      const reply = await post(page.dataset.buildUrl, {files: sources, base: page.dataset.base});
      if (!reply.ok) {
        buildState.textContent = reply.data.error.code + ": " + reply.data.error.message;
        buildButton.disabled = false; return;
      }
      const build = reply.data.build;
      buildState.textContent = build.ref + ": " + build.status;
      $("try-version").value = build.version;
      followBuild(build.events_url, log, null, (data) => {
        buildState.textContent = build.ref + ": " + data.status + (data.error ? " — " + data.error : "");
        buildState.dataset.status = data.status;
        buildButton.disabled = false;
      });
    });

    const tryButton = $("try-button"), tryState = $("try-state");
    tryButton.addEventListener("click", async () => {
      let input;
      try { input = JSON.parse($("try-input").value); }
      catch (e) { tryState.textContent = "the input is not JSON: " + e.message; return; }
      tryButton.disabled = true; tryState.textContent = "calling…";
      const algorithm = page.dataset.algorithm + "@" + ($("try-version").value.trim() || "latest");
      const reply = await post(page.dataset.tryUrl, {algorithm, input}, {Prefer: "wait=30"});
      tryButton.disabled = false;
      if (!reply.ok) { tryState.textContent = reply.data.error.code + ": " + reply.data.error.message; return; }
      const job = reply.data.job;
      tryState.textContent = job.algorithm + ": " + job.status;
      $("try-result").hidden = false;
      $("try-job-link").href = reply.data.url;
      setStatus($("try-status"), job.status);
      $("try-output").textContent = JSON.stringify(job.output, null, 2);
      $("try-error").textContent = job.error ? job.error.type + ": " + job.error.message + "\n\n" + (job.error.traceback || "") : "";
      $("try-error-box").hidden = !job.error;
      $("try-logs").textContent = job.logs || "";
      $("try-metrics").textContent = job.metrics ? JSON.stringify(job.metrics, null, 2) : "";
      const list = $("try-artifacts"); list.replaceChildren();
      for (const artifact of job.artifacts || []) {
        const item = document.createElement("li"), link = document.createElement("a");
        const url = page.dataset.artifacts.replace("SHA", artifact.sha256);
        link.href = url + "?download=1"; link.textContent = artifact.name; item.append(link);
        if (page.dataset.inlineImages.split(" ").includes(artifact.media_type)) {
          const img = document.createElement("img"); img.src = url; img.alt = artifact.name;
          item.append(document.createElement("br"), img);
        }
        list.append(item);
      }
    });
  }

  // Data upload: the file's bytes as the body, so its own media type is kept.
  function uploadForm(form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const file = $("u-file").files[0]; if (!file) return;
      const path = ($("u-path").value.trim() || file.name).split("/").map(encodeURIComponent).join("/");
      $("upload-state").textContent = "uploading…";
      const response = await fetch(form.dataset.upload.replace("PATH", path), {
        method: "PUT", body: file, credentials: "same-origin",
        headers: {"Content-Type": file.type || "application/octet-stream",
                  "X-CSRF-Token": form.dataset.csrf, Accept: "application/json"}});
      if (response.ok) { window.location.reload(); return; }
      const data = await response.json();
      $("upload-state").textContent = data.error.code + ": " + data.error.message;
    });
  }

  // A form that destroys something asks first.
  document.addEventListener("submit", (event) => {
    const message = event.target.dataset && event.target.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  });

  document.addEventListener("DOMContentLoaded", () => {
    const upload = $("upload-form"); if (upload) uploadForm(upload);
    const jobs = document.querySelector("[data-live-jobs]"); if (jobs) liveJobs(jobs);
    const batches = document.querySelector("[data-live-batches]"); if (batches) liveBatches(batches);
    const log = $("build-log");
    if (log && log.dataset.live === "yes") followBuild(log.dataset.buildEvents, log, $("build-status"));
    const job = document.querySelector("[data-job-status]");
    if (job && job.dataset.terminal === "no") watchJob(job);
    const page = $("editor-page"); if (page) editorPage(page);
    for (const chart of document.querySelectorAll("[data-chart-rows]")) chart.hidden = false;
  });
})();
