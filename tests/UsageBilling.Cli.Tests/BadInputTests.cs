using UsageBilling.Cli.Tests.Infrastructure;

namespace UsageBilling.Cli.Tests;

/// <summary>Bad input gives one clear line on stderr and a non-zero exit; the stack trace only with --verbose.</summary>
public sealed class BadInputTests : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "usagebilling-cli-tests", Guid.NewGuid().ToString("N"));

    public BadInputTests()
    {
        Directory.CreateDirectory(_folder);
        File.WriteAllText(Path.Combine(_folder, "appsettings.json"), CliWorld.AppSettings);
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private static void AssertOneLine(CliRun run, int exitCode, string expected)
    {
        Assert.True(run.ExitCode == exitCode, run.ToString());
        var line = Assert.Single(run.StderrLines);
        Assert.Contains(expected, line, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", run.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Setup_MalformedKey_OneLineExit2()
    {
        var run = await CliRunner.RunAsync(_folder, "setup", "--stripe-key", "pk_test_123456789", "--stripe-api-base", "http://127.0.0.1:9");
        AssertOneLine(run, 2, "Stripe:SecretKey must be a secret key starting with sk_test_");
    }

    [Fact]
    public async Task Setup_MalformedKeyVerbose_PrintsStackTrace()
    {
        var run = await CliRunner.RunAsync(_folder, "setup", "--stripe-key", "pk_test_123456789", "--verbose");
        Assert.Equal(2, run.ExitCode);
        Assert.True(run.StderrLines.Length > 1, run.ToString());
        Assert.Contains("   at ", run.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Setup_NoKeyConfigured_OneLine()
    {
        var run = await CliRunner.RunAsync(_folder, "setup");
        AssertOneLine(run, 2, "Stripe:SecretKey is required");
    }

    [Fact]
    public async Task Flush_NoDatabase_OneLine()
    {
        var run = await CliRunner.RunAsync(_folder, "flush", "--stripe-key", "sk_test_123456789");
        AssertOneLine(run, 2, "no SQLite database at");
    }

    [Fact]
    public async Task Status_UnreachablePostgres_OneLineExit3()
    {
        var run = await CliRunner.RunAsync(_folder, "status", "--connection", "Host=127.0.0.1;Port=9;Username=u;Password=p;Database=d;Timeout=3");
        AssertOneLine(run, 3, "cannot reach the database");
    }

    [Theory]
    [InlineData("0d", "--keep must be at least 35d")]
    [InlineData("30d", "--keep must be at least 35d")]
    [InlineData("abc", "--keep must be a number of days such as 90d; got 'abc'")]
    [InlineData("90", "--keep must be a number of days such as 90d; got '90'")]
    public async Task DbPrune_BadKeep_OneLineExit2(string keep, string expected)
    {
        var run = await CliRunner.RunAsync(_folder, "db", "prune", "--keep", keep);
        AssertOneLine(run, 2, expected);
    }

    [Fact]
    public async Task Setup_UnreachableStripe_OneLineExit3()
    {
        var run = await CliRunner.RunAsync(_folder, "setup", "--stripe-key", "sk_test_123456789", "--stripe-api-base", "http://127.0.0.1:9");
        AssertOneLine(run, 3, "cannot reach Stripe at http://127.0.0.1:9");
    }

    [Fact]
    public async Task Status_UnmigratedDatabase_OneLineNamesTheFix()
    {
        await File.WriteAllBytesAsync(Path.Combine(_folder, "empty.db"), [], TestContext.Current.CancellationToken);
        var run = await CliRunner.RunAsync(_folder, "status", "--connection", "Data Source=empty.db");
        AssertOneLine(run, 2, "run 'usagebilling db migrate' first");
    }

    [Fact]
    public async Task Status_UnknownProvider_OneLine()
    {
        var run = await CliRunner.RunAsync(_folder, "status", "--provider", "mysql", "--connection", "Data Source=x.db");
        AssertOneLine(run, 2, "--provider (Database:Provider) must be sqlite or postgres");
    }

    [Fact]
    public async Task UnknownOption_OneLineExit2()
    {
        var run = await CliRunner.RunAsync(_folder, "flush", "--bogus");
        AssertOneLine(run, 2, "--bogus");
    }
}
