// Types for the `sentiment` package (AFINN-165 lexicon), which ships none.
declare module 'sentiment' {
  interface AnalysisResult {
    score: number;
    comparative: number;
    calculation: Record<string, number>[];
    tokens: string[];
    words: string[];
    positive: string[];
    negative: string[];
  }
  interface AnalysisOptions {
    language?: string;
    extras?: Record<string, number>;
  }
  class Sentiment {
    constructor(options?: Record<string, unknown>);
    analyze(phrase: string, options?: AnalysisOptions): AnalysisResult;
  }
  export = Sentiment;
}
