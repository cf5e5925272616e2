using System.Globalization;
using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Playwright;
using UsageBilling.Web.Data;
using UsageBilling.Web.Tests.Infrastructure;
using static Microsoft.Playwright.Assertions;

namespace UsageBilling.Web.Tests;

/// <summary>
/// Each state of the usage page in a real browser (Debian's Chromium through Playwright), with the words the
/// customer reads asserted and a screenshot written to <c>artifacts/browser</c> (the ones in
/// <c>docs/screenshots</c> come from these tests). The "tiny" plan: 5 messages included, 0.50 USD each beyond,
/// hard limit 8; without a plan the app allows 20 free messages a month.
/// </summary>
public sealed class UsagePageStateTests(BrowserWebApp app) : IClassFixture<BrowserWebApp>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task NoPlan_SaysThereIsNoPlanAndWhatTheFreeAllowanceAllows_NeverZeroOfZero()
    {
        await using var browser = await Browser.StartAsync(app.BaseUrl);
        var userId = await SignUpAsync(browser.Page, plan: null);
        await RecordAsync(userId, 3);

        await browser.Page.GotoAsync("/usage");

        var meter = browser.Page.GetByTestId("meter-ai_messages");
        await Expect(meter).ToHaveAttributeAsync("data-state", "no-plan");
        await Expect(browser.Page.GetByTestId("plan")).ToHaveTextAsync("none");
        await Expect(browser.Page.GetByTestId("state-ai_messages")).ToContainTextAsync("No plan. Without one you may use 20 messages free per month: 3 used, 17 left until");
        await Expect(browser.Page.GetByTestId("state-ai_messages")).ToContainTextAsync("Nothing is billed.");
        await Expect(browser.Page.GetByTestId("forecast-text-ai_messages")).ToContainTextAsync("not billed (no plan)");
        await Expect(browser.Page.Locator("main")).Not.ToContainTextAsync("0 of 0");
        await Expect(browser.Page.Locator("main")).Not.ToContainTextAsync("included used");
        await browser.ScreenshotAsync("usage-no-plan.png");
    }

    [Fact]
    public async Task WithinAllowance_ShowsUsedOfIncludedAndAGreenBar()
    {
        await using var browser = await Browser.StartAsync(app.BaseUrl);
        var userId = await SignUpAsync(browser.Page, plan: "tiny");
        await RecordAsync(userId, 2);

        await browser.Page.GotoAsync("/usage");

        await Expect(browser.Page.GetByTestId("meter-ai_messages")).ToHaveAttributeAsync("data-state", "within");
        await Expect(browser.Page.GetByTestId("state-ai_messages")).ToHaveTextAsync("Within your allowance: 3 more messages before each costs 0.50 USD.");
        await Expect(browser.Page.GetByTestId("usage-figures-ai_messages")).ToHaveTextAsync("2 of 5 messages included used (3 left)");
        await Expect(browser.Page.GetByTestId("usage-bar-ai_messages")).ToHaveAttributeAsync("data-level", "ok");
        await Expect(browser.Page.GetByTestId("warning-ai_messages")).ToHaveCountAsync(0);
        await Expect(browser.Page.GetByTestId("cost-ai_messages")).ToHaveTextAsync("0.00 USD");
        await browser.ScreenshotAsync("usage-within-allowance.png");
    }

    [Fact]
    public async Task ThresholdCrossed_WarnsAt80PercentAndShowsTheAlert()
    {
        await using var browser = await Browser.StartAsync(app.BaseUrl);
        var userId = await SignUpAsync(browser.Page, plan: "tiny");
        await RecordAsync(userId, 4);

        await browser.Page.GotoAsync("/usage");

        await Expect(browser.Page.GetByTestId("meter-ai_messages")).ToHaveAttributeAsync("data-state", "threshold");
        await Expect(browser.Page.GetByTestId("state-ai_messages")).ToHaveTextAsync("Nearly through your allowance: 1 more message before each costs 0.50 USD.");
        await Expect(browser.Page.GetByTestId("usage-figures-ai_messages")).ToHaveTextAsync("4 of 5 messages included used (1 left)");
        await Expect(browser.Page.GetByTestId("warning-ai_messages")).ToHaveTextAsync("You have used 80% of your allowance.");
        await Expect(browser.Page.GetByTestId("alert-banner")).ToContainTextAsync("You reached 80 % of your included AI messages: 4 used");
        await Expect(browser.Page.GetByTestId("usage-bar-ai_messages")).ToHaveAttributeAsync("data-level", "warn");
        await browser.ScreenshotAsync("usage-threshold-crossed.png");
    }

    [Fact]
    public async Task Overage_SaysHowFarOverWhatEachCostsAndHowMuchIsLeftToTheLimit()
    {
        await using var browser = await Browser.StartAsync(app.BaseUrl);
        var userId = await SignUpAsync(browser.Page, plan: "tiny");
        await RecordAsync(userId, 6);

        await browser.Page.GotoAsync("/usage");

        await Expect(browser.Page.GetByTestId("meter-ai_messages")).ToHaveAttributeAsync("data-state", "overage");
        await Expect(browser.Page.GetByTestId("state-ai_messages")).ToHaveTextAsync("Allowance of 5 used up: 1 over it, billed at 0.50 USD each now; at most 2 more until the limit of 8.");
        await Expect(browser.Page.GetByTestId("usage-bar-ai_messages")).ToHaveAttributeAsync("data-level", "over");
        await Expect(browser.Page.GetByTestId("cost-ai_messages")).ToHaveTextAsync("0.50 USD");
        await Expect(browser.Page.GetByTestId("projected-total")).ToHaveTextAsync("5.50 USD");
        await Expect(browser.Page.GetByTestId("limit-reached-ai_messages")).ToHaveCountAsync(0);
        await browser.ScreenshotAsync("usage-overage.png");
    }

    [Fact]
    public async Task LimitReached_SaysUntilWhen_NeverThatFurtherUseIsBilled()
    {
        await using var browser = await Browser.StartAsync(app.BaseUrl);
        var userId = await SignUpAsync(browser.Page, plan: "tiny");
        await RecordAsync(userId, 8);

        await browser.Page.GotoAsync("/usage");

        var periodEnd = await browser.Page.GetByTestId("period-end").TextContentAsync();
        var resetsAt = await browser.Page.GetByTestId("resets-at-ai_messages").TextContentAsync();
        await Expect(browser.Page.GetByTestId("meter-ai_messages")).ToHaveAttributeAsync("data-state", "limit-reached");
        await Expect(browser.Page.GetByTestId("state-ai_messages")).ToHaveTextAsync($"The plan's limit reached: 8 of 8 messages used; nothing more can be used until {resetsAt}, when the period ends.");
        await Expect(browser.Page.GetByTestId("limit-reached-ai_messages")).ToHaveCountAsync(1);
        Assert.StartsWith(periodEnd!, resetsAt, StringComparison.Ordinal);
        await Expect(browser.Page.Locator("main")).Not.ToContainTextAsync("billed per unit");
        await Expect(browser.Page.Locator("main")).Not.ToContainTextAsync("each now");
        await Expect(browser.Page.GetByTestId("forecast-text-ai_messages")).ToContainTextAsync("8 messages (stopped by the limit)");

        // One record crossed 80 % and 100 % of the allowance and the limit at once: the banner names the limit.
        await Expect(browser.Page.GetByTestId("alert-banner")).ToContainTextAsync("You reached 100 % of your AI messages limit");
        await browser.ScreenshotAsync("usage-limit-reached.png");
    }

    private async Task<Guid> SignUpAsync(IPage page, string? plan)
    {
        var email = $"state-{Guid.NewGuid():N}@example.com";
        await page.GotoAsync("/account/register");
        await SignUpPage.SignUpAsync(page, email);
        if (plan is not null)
        {
            await page.GetByTestId($"choose-{plan}").ClickAsync();
            await Expect(page.GetByTestId("current-plan")).ToHaveTextAsync(CultureInfo.InvariantCulture.TextInfo.ToTitleCase(plan));
        }

        await using var scope = app.Services.CreateAsyncScope();
        var user = await scope.ServiceProvider.GetRequiredService<UserManager<AppUser>>().FindByEmailAsync(email);
        return user?.Id ?? throw new InvalidOperationException("The account was not created.");
    }

    /// <summary>Usage as the assistant records it, through the app's own recorder (the guard and the alerts included).</summary>
    private async Task RecordAsync(Guid userId, long quantity) =>
        await app.Services.GetRequiredService<IUsageRecorder>().RecordAsync(userId, "ai_messages", quantity, $"state-test-{Guid.NewGuid():N}", cancellationToken: Ct);
}

/// <summary>Debian's Chromium through Playwright, one page, and a screenshot helper.</summary>
internal sealed class Browser : IAsyncDisposable
{
    private static readonly string[] ChromiumArgs =
        ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"];

    private readonly IPlaywright _playwright;
    private readonly IBrowser _browser;
    private readonly List<string> _violations;

    private Browser(IPlaywright playwright, IBrowser browser, IPage page, List<string> violations)
    {
        _playwright = playwright;
        _browser = browser;
        _violations = violations;
        Page = page;
    }

    public IPage Page { get; }

    public static async Task<Browser> StartAsync(string baseUrl)
    {
        var chromium = Environment.GetEnvironmentVariable("USAGEBILLING_CHROMIUM") ?? "/usr/bin/chromium";
        Assert.True(File.Exists(chromium), $"Chromium not found at '{chromium}': install Debian's chromium (scripts/test.sh does) or set USAGEBILLING_CHROMIUM.");
        var playwright = await Playwright.CreateAsync();
        var browser = await playwright.Chromium.LaunchAsync(new() { ExecutablePath = chromium, Headless = true, Args = ChromiumArgs });
        var page = await browser.NewPageAsync(new() { BaseURL = baseUrl, ViewportSize = new() { Width = 1000, Height = 900 } });

        // The machine running the suite may be shared and loaded: generous waits, still failing on a wrong page.
        page.SetDefaultTimeout(60_000);
        page.SetDefaultNavigationTimeout(60_000);
        Assertions.SetDefaultExpectTimeout(15_000);

        // The CSP must hold on every page these tests look at: a violation is a failure, not a warning.
        var violations = new List<string>();
        page.Console += (_, message) =>
        {
            if (message.Text.Contains("Content Security Policy", StringComparison.OrdinalIgnoreCase))
            {
                violations.Add(message.Text);
            }
        };
        return new Browser(playwright, browser, page, violations);
    }

    /// <summary>Writes a full-page screenshot (or one of <paramref name="element"/>) to <c>artifacts/browser/</c>.</summary>
    public async Task ScreenshotAsync(string name, ILocator? element = null)
    {
        Assert.Empty(_violations);
        var bytes = element is null
            ? await Page.ScreenshotAsync(new() { FullPage = true })
            : await element.ScreenshotAsync();
        var path = Path.Combine(ArtifactsFolder(), name);
        await File.WriteAllBytesAsync(path, bytes, TestContext.Current.CancellationToken);
        TestContext.Current.AddAttachment(name, bytes, "image/png");
    }

    public async ValueTask DisposeAsync()
    {
        await _browser.DisposeAsync();
        _playwright.Dispose();
    }

    /// <summary><c>artifacts/browser</c> at the repository root (ignored by git), or beside the test binaries.</summary>
    private static string ArtifactsFolder()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "UsageBilling.slnx")))
        {
            dir = dir.Parent;
        }

        var folder = Path.Combine(dir?.FullName ?? AppContext.BaseDirectory, "artifacts", "browser");
        Directory.CreateDirectory(folder);
        return folder;
    }
}

/// <summary>The chart over the whole billing period, on the demo account (12 days of history in a monthly period).</summary>
public sealed class UsageChartBrowserTests(DemoWebApp app) : IClassFixture<DemoWebApp>
{
    [Fact]
    public async Task Chart_CoversTheWholePeriod_BarsUpToToday_TicksForecastAndATable()
    {
        await using var browser = await Browser.StartAsync(app.BaseUrl);
        var page = browser.Page;
        await page.GotoAsync("/account/login");
        await page.GetByTestId("email").FillAsync("demo@usagebilling.local");
        await page.GetByTestId("password").FillAsync("demo-password-1");
        await page.GetByTestId("login").ClickAsync();
        await PageLanding.WaitAsync(page, "/usage", "Signing in");

        await using var db = app.CreateDbContext();
        var demoId = db.Users.Single(u => u.Email == "demo@usagebilling.local").Id;
        var summary = await app.Services.GetRequiredService<IUsageSummaryService>().GetCurrentPeriodAsync(demoId, TestContext.Current.CancellationToken);
        var m = summary.Meters.Single(x => x.Meter == "ai_messages");
        var firstDay = DateOnly.FromDateTime(m.PeriodStart.UtcDateTime);
        var days = DateOnly.FromDateTime(m.PeriodEnd.UtcDateTime.AddTicks(-1)).DayNumber - firstDay.DayNumber + 1;
        var elapsed = DateOnly.FromDateTime(DateTime.UtcNow).DayNumber - firstDay.DayNumber + 1;

        var chart = page.GetByTestId("chart-ai_messages");
        var bars = chart.Locator("rect.bar");

        // One bar per day up to today, none ahead; their values add up to the period's usage.
        await Expect(bars).ToHaveCountAsync(elapsed);
        var values = await bars.EvaluateAllAsync<long[]>("bs => bs.map(b => Number(b.getAttribute('data-value')))");
        Assert.Equal(m.Used, values.Sum());
        Assert.True(days >= 28 && elapsed < days, $"{elapsed} of {days} days");
        Assert.Contains(": ", await bars.First.Locator("title").TextContentAsync(), StringComparison.Ordinal);

        // Both axes have ticks between zero and the top, and the x-axis names days across the period.
        Assert.True(await chart.GetByTestId("ytick-ai_messages").CountAsync() >= 4);
        Assert.True(await chart.GetByTestId("ytick-daily-ai_messages").CountAsync() >= 3);
        Assert.True(await chart.GetByTestId("xtick-ai_messages").CountAsync() >= 5);
        await Expect(chart.GetByTestId("xtick-ai_messages").Last).ToHaveTextAsync(m.PeriodEnd.AddTicks(-1).UtcDateTime.ToString("MMM d", CultureInfo.InvariantCulture));
        await Expect(chart.GetByTestId("allowance-line-ai_messages")).ToHaveCountAsync(1);
        await Expect(chart.GetByTestId("limit-line-ai_messages")).ToHaveCountAsync(1);
        await Expect(chart.GetByTestId("forecast-ai_messages")).ToHaveCountAsync(1);
        var forecast = await page.GetByTestId("forecast-text-ai_messages").TextContentAsync();
        Assert.Matches(@"^Forecast for \d{4}-\d\d-\d\d at the current rate of [\d.]+ messages a day: [\d,]+ messages, projected usage cost \d+\.\d\d USD\.$", forecast);

        // The figures for screen readers: one row per day of the period, days ahead without usage.
        var rows = page.GetByTestId("chart-table-ai_messages").Locator("tbody tr");
        await Expect(rows).ToHaveCountAsync(days);
        await Expect(rows.Last.Locator("td").First).ToHaveTextAsync("—");

        await browser.ScreenshotAsync("usage-chart.png", page.GetByTestId("chart-figure-ai_messages"));
        await browser.ScreenshotAsync("usage-demo.png");
    }
}
