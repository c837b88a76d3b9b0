/* The statistics page's charts: the series come from the page itself
   (<script type="application/json" id="stats-data">), amounts in fen. */
(function () {
  "use strict";
  var source = document.getElementById("stats-data");
  if (!source || !window.echarts) { return; }
  var data = JSON.parse(source.textContent);
  var yuan = function (fen) { return Math.round(fen) / 100; };
  var money = function (v) { return "¥" + Number(v).toFixed(2); };
  var grid = { left: 56, right: 56, top: 60, bottom: 56, containLabel: false };
  var legend = { top: 0, type: "scroll" };
  var zoom = data.days.length > 31 ? [{ type: "inside" }, { type: "slider", height: 16, bottom: 8 }] : [];
  if (!zoom.length) { grid.bottom = 32; }
  var daysAxis = { type: "category", data: data.days.map(function (d) { return d.slice(5); }) };

  var options = {
    sales: {
      tooltip: { trigger: "axis" }, legend: legend, grid: grid, dataZoom: zoom, xAxis: daysAxis,
      yAxis: [{ type: "value", name: "元" }, { type: "value", name: "笔", minInterval: 1 }],
      series: [
        { name: "净销售额", type: "bar", data: data.net_fen.map(yuan), tooltip: { valueFormatter: money } },
        { name: "付款订单", type: "line", yAxisIndex: 1, data: data.orders_paid }
      ]
    },
    people: {
      tooltip: { trigger: "axis" }, legend: legend, grid: grid, dataZoom: zoom, xAxis: daysAxis,
      yAxis: { type: "value", name: "人", minInterval: 1 },
      series: [
        { name: "新增关注", type: "line", data: data.new_followers },
        { name: "新增客户", type: "line", data: data.new_customers },
        { name: "新增分销商", type: "line", data: data.new_distributors }
      ]
    },
    commission: {
      tooltip: { trigger: "axis", valueFormatter: money }, legend: legend, grid: grid, dataZoom: zoom,
      xAxis: daysAxis, yAxis: { type: "value", name: "元" },
      series: [
        { name: "产生佣金", type: "bar", data: data.commission_accrued_fen.map(yuan) },
        { name: "结算佣金", type: "bar", data: data.commission_settled_fen.map(yuan) },
        { name: "提现打款", type: "line", data: data.withdrawals_paid_fen.map(yuan) }
      ]
    },
    units: {
      tooltip: { trigger: "axis", valueFormatter: money }, grid: { left: 8, right: 40, top: 16, bottom: 8, containLabel: true },
      xAxis: { type: "value", name: "元" },
      yAxis: { type: "category", inverse: true, data: data.top_units.map(function (u) { return u.name; }),
               axisLabel: { width: 96, overflow: "truncate" } },
      series: [{ name: "净销售额", type: "bar", data: data.top_units.map(function (u) { return yuan(u.net_fen); }) }]
    },
    funnel: {
      tooltip: { trigger: "axis" }, legend: legend, grid: { left: 8, right: 16, top: 40, bottom: 8, containLabel: true },
      xAxis: { type: "category", data: data.funnel.slice(0, 10).map(function (u) { return u.name; }),
               axisLabel: { interval: 0, rotate: 30, width: 80, overflow: "truncate" } },
      yAxis: { type: "value", minInterval: 1 },
      series: [["访客", "visitors"], ["绑定客户", "bound"], ["首单", "first_orders"]].map(function (s) {
        return { name: s[0], type: "bar", data: data.funnel.slice(0, 10).map(function (u) { return u[s[1]]; }) };
      })
    }
  };

  var charts = [];
  document.querySelectorAll("[data-chart]").forEach(function (el) {
    var option = options[el.getAttribute("data-chart")];
    if (!option) { return; }
    var chart = echarts.init(el, null, { locale: "ZH", renderer: "canvas" });
    chart.setOption(option);
    charts.push(chart);
  });
  window.addEventListener("resize", function () { charts.forEach(function (c) { c.resize(); }); });
  document.documentElement.setAttribute("data-charts", String(charts.length));
})();
